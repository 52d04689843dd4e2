"""Builds the seqmesh wheel with the project's own CMake build (the parent of python/).

The extension (_seqmesh) and the `seqmesh` executable are CMake targets of the whole project, so
build_ext runs CMake rather than compiling sources itself; it then copies the extension into the
package and the executable to seqmesh/bin/seqmesh, where seqmesh._binary() looks for it (launch
runs jobs through it). The pure-Python files come from python/seqmesh/ as usual.

Debian marks /usr/bin/python3 externally managed (PEP 668), so a plain `pip install` into it is
refused: install into a venv made with `/usr/bin/python3 -m venv --system-site-packages` (numpy
stays Debian's), with --target DIR, or pass --break-system-packages.

Environment:
  SEQMESH_BUILD_DIR  a CMake build directory to use (an existing one is only brought up to date,
                     e.g. SEQMESH_BUILD_DIR=$PWD/build, so an installed package costs no rebuild);
                     default: a directory under setuptools' build_temp, configured on first use.
  SEQMESH_CMAKE_ARGS extra arguments for the first configure (split on spaces).
"""

import importlib.machinery
import os
import re
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the project: its CMakeLists.txt builds everything


def project_version() -> str:
    """The CMake project's version (project(seqmesh VERSION x.y.z)), the extension's __version__."""
    with open(os.path.join(ROOT, "CMakeLists.txt"), encoding="utf-8") as f:
        found = re.search(r"project\(\s*seqmesh\s+VERSION\s+([0-9][0-9.]*)", f.read())
    if not found:
        raise RuntimeError(f"no 'project(seqmesh VERSION x.y.z' in {ROOT}/CMakeLists.txt")
    return found.group(1)


class CMakeBuild(build_ext):
    """build_ext over CMake: builds the targets _seqmesh and seqmesh and copies what they made."""

    def build_extension(self, ext: Extension) -> None:
        build_dir = os.environ.get("SEQMESH_BUILD_DIR") or os.path.join(
            os.path.abspath(self.build_temp), "cmake")
        build_dir = os.path.abspath(build_dir)
        if not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            # The extension is built for the interpreter running this build (SEQMESH_PYTHON).
            configure = ["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                         f"-DSEQMESH_PYTHON={sys.executable}"]
            configure += os.environ.get("SEQMESH_CMAKE_ARGS", "").split()
            self.announce(" ".join(configure), level=2)
            subprocess.run(configure, check=True)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
        subprocess.run(["cmake", "--build", build_dir, "--parallel", jobs,
                        "--target", "_seqmesh", "seqmesh"], check=True)

        # The extension, under the name this interpreter imports (an existing build may have been
        # made for another Python: say so rather than ship a module that cannot load).
        built = os.path.join(build_dir, "python", "seqmesh")
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        module = os.path.join(built, "_seqmesh" + suffix)
        if not os.path.exists(module):
            others = [f for f in os.listdir(built) if f.startswith("_seqmesh")] \
                if os.path.isdir(built) else []
            raise RuntimeError(
                f"{module} was not built (found: {', '.join(others) or 'nothing'}); the build "
                f"in {build_dir} is for another Python or has no python/ (pybind11-dev and "
                f"python3-dev needed): reconfigure it with -DSEQMESH_PYTHON={sys.executable}")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(module, target)

        # The executable that runs `seqmesh.launch` jobs (copy2 keeps its mode bits).
        binary = os.path.join(build_dir, "launch", "seqmesh")
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"the seqmesh executable {binary} was not built")
        bin_dir = os.path.join(os.path.dirname(target), "bin")
        os.makedirs(bin_dir, exist_ok=True)
        shutil.copy2(binary, os.path.join(bin_dir, "seqmesh"))


setup(
    name="seqmesh",
    version=project_version(),
    description="seqmesh from Python: configs, steps, callbacks, numpy views and HDP jobs",
    python_requires=">=3.11",  # tomllib
    # numpy is needed but not declared: pip --target ignores the installed packages and would
    # try to fetch it from an index (there is none here); Debian's python3-numpy provides it.
    packages=["seqmesh"],
    package_data={"seqmesh": ["py.typed", "*.pyi"]},
    ext_modules=[Extension("seqmesh._seqmesh", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
