"""What the Python end-to-end tests of tests/launch share: a work directory, a failing check,
the tiny dataset (40 documents of 20..900 bytes, as hdp_e2e_test makes), the tiny model's config
with each test's keys over it, and a runner of `seqmesh` that fails naming the command and its
output."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

TINY = {
    "model": {"vocab": 259, "hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "ffn": 64},
    "training": {"global_batch_tokens": 2048, "threads": 1},
    "distributed": {"heartbeat_timeout_s": 5, "comm_deadline_s": 20},
}


@contextlib.contextmanager
def work_dir(prefix):
    """A fresh temporary directory, removed afterwards unless KEEP is set (then named on stderr)."""
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        yield work
    finally:
        if os.environ.get("KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def make_dataset(seqmesh, work, env):
    """Writes work/text/doc*.txt and returns the `seqmesh prep` prefix work/data."""
    text = os.path.join(work, "text")
    os.makedirs(text)
    for i in range(1, 41):
        length = (i * 397) % 881 + 20
        line = f"doc {i}: the quick brown fox jumps over the lazy dog {i % 7}\n"
        with open(os.path.join(text, f"doc{i:02d}.txt"), "w") as f:
            f.write((line * (length // len(line) + 1))[:length])
    data = os.path.join(work, "data")
    subprocess.run([seqmesh, "prep", "--output", data, text], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    return data


def write_config(path, **sections):
    """TINY with `sections` ({"training": {"steps": 4}, ...}) over it, as TOML at `path`."""
    merged = {k: dict(v) for k, v in TINY.items()}
    for name, keys in sections.items():
        merged.setdefault(name, {}).update(keys)

    def toml(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        return f'"{v}"' if isinstance(v, str) else repr(v)

    with open(path, "w") as f:
        for name, keys in merged.items():
            f.write(f"[{name}]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in keys.items()))
    return path


def runner(seqmesh, env, cwd=None):
    """run(*args, what=...): `seqmesh args...` (or any command when args[0] is a path), its output
    on success; on failure an AssertionError naming `what`, the exit status and the output's end."""
    def run(*args, what):
        cmd = list(args) if args and os.path.isabs(str(args[0])) else [seqmesh, *args]
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, cwd=cwd)
        check(p.returncode == 0, f"{what} failed ({p.returncode}):\n{p.stdout[-3000:]}")
        return p.stdout
    return run
