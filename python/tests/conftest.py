"""Shared fixtures: a small byte-level dataset made with seqmesh.prep, and a tiny model's config
that trains a step in milliseconds (the shapes of tests/launch/hdp_e2e_test.sh)."""

import os
import sys

import pytest

import seqmesh

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))  # llama_ref, the PyTorch reference


def write_documents(directory, count=60):
    """`count` documents of 20..900 bytes, deterministic."""
    os.makedirs(directory, exist_ok=True)
    for i in range(1, count + 1):
        length = (i * 397) % 881 + 20
        line = f"doc {i}: the quick brown fox jumps over the lazy dog {i % 7}\n"
        text = (line * (length // len(line) + 1))[:length]
        with open(os.path.join(directory, f"doc{i:02d}.txt"), "w") as f:
            f.write(text)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_documents(root / "text")
    return seqmesh.prep(str(root / "text"), str(root / "data"))


def tiny_overrides(run_dir, data_path=None, steps=6, **more):
    o = {
        "model.vocab": 259, "model.hidden": 32, "model.layers": 2, "model.heads": 4,
        "model.kv_heads": 2, "model.ffn": 64,
        "training.steps": steps, "training.global_batch_tokens": 2048,
        "training.micro_batch_tokens": 256, "training.log_interval": 1, "training.threads": 1,
        "training.seed": 3,
        "optimizer.lr": 2e-3, "optimizer.min_lr": 2e-3, "optimizer.warmup_steps": 0,
        "checkpoint.dir": str(run_dir), "checkpoint.interval": 2, "checkpoint.keep": 10,
    }
    if data_path is not None:
        o["data.path"] = data_path
    o.update(more)
    return o


@pytest.fixture
def tiny(dataset, tmp_path):
    """A function: tiny(name, **overrides) -> Config of a run in tmp_path/name on `dataset`."""
    def make(name="run", steps=6, with_data=True, **more):
        return seqmesh.Config.load(None, tiny_overrides(tmp_path / name,
                                                        dataset if with_data else None,
                                                        steps, **more))
    return make
