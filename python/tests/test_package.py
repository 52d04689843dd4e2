"""The package as built and installed: it imports, says the CMake project's version, and its type
stub (seqmesh/__init__.pyi) covers the public API. The pip install itself is slow (it runs the
CMake build) and runs only with SEQMESH_TEST_PIP=1."""

import ast
import inspect
import os
import re
import subprocess
import sys

import pytest

import seqmesh

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(REPO, "python", "seqmesh")


def cmake_version() -> str:
    with open(os.path.join(REPO, "CMakeLists.txt"), encoding="utf-8") as f:
        return re.search(r"project\(\s*seqmesh\s+VERSION\s+([0-9.]+)", f.read()).group(1)


def stub_names() -> dict[str, ast.AST]:
    """Top-level names the stub defines (classes, functions, annotated and plain assignments)."""
    with open(os.path.join(SOURCE, "__init__.pyi"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            names.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
    return names


def test_imports_the_build_tree_package():
    # ctest runs with PYTHONPATH=build/python: the extension next to the copied Python files.
    assert os.path.exists(os.path.join(os.path.dirname(seqmesh.__file__), "py.typed"))
    assert seqmesh._seqmesh.__file__.startswith(os.path.dirname(seqmesh.__file__))
    assert os.access(seqmesh._binary(), os.X_OK)


def test_version_is_the_cmake_project_version():
    assert seqmesh.__version__ == cmake_version()


def test_stub_names_every_public_name():
    names = stub_names()
    missing = [n for n in seqmesh.__all__ if n not in names]
    assert not missing, f"__init__.pyi lacks {missing}"


def test_stub_signatures_match_the_functions():
    # Each public function's and method's parameters, in order, as the stub declares them.
    names = stub_names()

    def params(node: ast.FunctionDef) -> list[str]:
        a = node.args
        return [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs
                if p.arg not in ("self", "cls")]

    def real(f) -> list[str]:
        return [p for p in inspect.signature(f).parameters if p not in ("self", "cls")]

    for name in seqmesh.__all__:
        obj = getattr(seqmesh, name)
        node = names[name]
        if inspect.isfunction(obj):
            assert params(node) == real(obj), name
        elif inspect.isclass(obj) and obj.__module__ == "seqmesh" and isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                    method = inspect.getattr_static(obj, item.name)
                    if isinstance(method, (classmethod, staticmethod)):
                        method = method.__func__
                    if inspect.isfunction(method):
                        assert params(item) == real(method), f"{name}.{item.name}"


def test_stub_is_shipped_with_the_package():
    # setup.py's package_data and python/CMakeLists.txt's copy both take the stub and py.typed.
    built = os.path.dirname(seqmesh.__file__)
    for f in ("__init__.pyi", "py.typed"):
        with open(os.path.join(SOURCE, f), "rb") as a, open(os.path.join(built, f), "rb") as b:
            assert a.read() == b.read(), f


@pytest.mark.skipif(os.environ.get("SEQMESH_TEST_PIP") != "1",
                    reason="pip install runs the CMake build; set SEQMESH_TEST_PIP=1")
def test_pip_install_target(tmp_path):
    # The build tree this package came from (build/python/seqmesh -> build), so nothing rebuilds.
    build = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(seqmesh.__file__))))
    env = dict(os.environ)
    if os.path.exists(os.path.join(build, "CMakeCache.txt")):
        env["SEQMESH_BUILD_DIR"] = build
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--quiet",
                    "--target", str(target), os.path.join(REPO, "python")],
                   check=True, env=env, cwd=REPO)
    env = {k: v for k, v in os.environ.items() if k != "SEQMESH_BINARY"}
    env["PYTHONPATH"] = str(target)
    out = subprocess.run(
        [sys.executable, "-c", "import seqmesh; print(seqmesh.__version__); "
         "print(seqmesh.__file__); print(seqmesh._binary())"],
        check=True, capture_output=True, text=True, env=env, cwd=str(tmp_path)).stdout.split()
    assert out[0] == cmake_version()
    assert out[1] == str(target / "seqmesh" / "__init__.py")
    assert out[2] == str(target / "seqmesh" / "bin" / "seqmesh")
    assert os.access(out[2], os.X_OK)
    assert (target / "seqmesh" / "__init__.pyi").exists()
