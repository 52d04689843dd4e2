"""Every bad input raises its named exception with a message that names the argument, and never
crashes the interpreter: ConfigError for configs, ValueError for arrays and arguments, OSError
for files, seqmesh.Error for run-time failures."""

import numpy as np
import pytest

import seqmesh


def test_exception_types():
    assert issubclass(seqmesh.ConfigError, ValueError)
    assert issubclass(seqmesh.Error, RuntimeError)


def test_bad_configs(tmp_path):
    with pytest.raises(seqmesh.ConfigError, match="training.steps must be >= 1, got 0"):
        seqmesh.Config.load(None, {"training.steps": 0})
    with pytest.raises(seqmesh.ConfigError, match="did you mean 'optimizer.lr'"):
        seqmesh.Config.load(None, {"optimizer.learning_rate": 1e-3})
    with pytest.raises(seqmesh.ConfigError, match="must look like 'section.key'"):
        seqmesh.Config.load(None, {"steps": 3})
    with pytest.raises(seqmesh.ConfigError, match="no TOML form"):
        seqmesh.Config.load(None, {"training.steps": object()})
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nsteps = \n")
    with pytest.raises(seqmesh.ConfigError, match="line 2"):
        seqmesh.Config.load(bad)
    with pytest.raises(FileNotFoundError, match="no-such.toml"):
        seqmesh.Config.load(tmp_path / "no-such.toml")
    with pytest.raises(IsADirectoryError, match="is a directory"):
        seqmesh.Config.load(tmp_path)
    config = seqmesh.Config.load(None, {"training.steps": 7, "optimizer.warmup_steps": 0})
    assert config.training.steps == 7 and config.to_dict()["training"]["steps"] == 7
    assert config.replace({"training.steps": 9}).training.steps == 9
    with pytest.raises(AttributeError, match="no section"):
        config.trainingg
    with pytest.raises(AttributeError, match="no key 'stepz'"):
        config.training.stepz


@pytest.fixture
def trainer(tiny):
    return seqmesh.Trainer(tiny(with_data=False, steps=3), quiet=True)


@pytest.mark.parametrize("batch, message", [
    ([np.arange(10, dtype=np.float32)], r"batch\[0\] has dtype float32"),
    ([np.zeros((2, 5), dtype=np.int32)], r"batch\[0\] has 2 dimensions"),
    ([np.arange(20, dtype=np.int32)[::2]], r"batch\[0\] is not contiguous"),
    ([np.array([1, 2, 300], dtype=np.int32)], r"batch\[0\]\[2\] is token id 300, outside"),
    ([[1, 2], [3, -1]], r"batch\[1\]\[1\] is token id -1"),
    ([[1, 2], []], r"batch\[1\] is empty"),
    ([], r"batch is empty"),
    (np.arange(10, dtype=np.int32), r"batch must be a list of documents"),
    ("hello", r"batch must be a list of documents"),
    ([[1, 2.5]], r"batch\[0\]\[1\] is 2.5 \(float\)"),
    ([[1, True]], r"batch\[0\]\[1\] is True \(bool\)"),
    ([{"a": 1}], r"batch\[0\] is a dict"),
    ([[1, 2**70]], r"batch\[0\]\[1\] is token id"),
])
def test_bad_batches(trainer, batch, message):
    with pytest.raises(ValueError, match=message):
        trainer.step(batch)
    assert trainer.step_count == 0  # nothing ran


def test_a_batch_with_nothing_to_predict(trainer):
    with pytest.raises(seqmesh.Error, match="no next token to predict"):
        trainer.step([[5], [6]])


@pytest.mark.parametrize("cu, message", [
    ([1, 10], "must start at 0"),
    ([0, 9], "must end at 10"),
    ([0, 6, 4, 10], "must increase strictly"),
    ([0], "at least two entries"),
    (np.array([0, 10], dtype=np.float64), "cu_seqlens has dtype float64"),
])
def test_bad_cu_seqlens(trainer, cu, message):
    with pytest.raises(ValueError, match=message):
        trainer.model.forward(np.arange(10, dtype=np.int32), cu)


def test_bad_forward_inputs(trainer):
    with pytest.raises(ValueError, match="tokens has 257 tokens; one forward holds at most "
                                         "training.micro_batch_tokens = 256"):
        trainer.model.forward(np.zeros(257, dtype=np.int32))
    with pytest.raises(ValueError, match="tokens is empty"):
        trainer.model.loss([])
    assert trainer.model.forward([1, 2, 3], [0, 1, 3]).shape == (3, 259)


def test_files_and_run_time_errors(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from's config"):
        seqmesh.Trainer(tiny("x"), init_from=tmp_path / "nowhere", quiet=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        seqmesh.prep(tmp_path / "missing.txt", tmp_path / "out")
    with pytest.raises(seqmesh.Error, match="data"):
        seqmesh.Trainer(tiny("y", **{"data.path": str(tmp_path / "nodata")}), quiet=True)
    # A used run directory is refused, naming how to go on.
    first = seqmesh.Trainer(tiny("z", steps=2), quiet=True)
    first.train()
    with pytest.raises(seqmesh.Error, match="--resume"):
        seqmesh.Trainer(tiny("z", steps=2), quiet=True)
    with pytest.raises(seqmesh.Error, match="raise training.steps"):
        first.step()


def test_gradients_given_back_to_the_offloaded_optimizer(tiny, tmp_path):
    scratch = "/var/tmp"  # a disk file system (the SSD engine refuses tmpfs)
    trainer = seqmesh.Trainer(tiny(with_data=False, steps=2, **{
        "offload.optimizer": "nvme", "offload.nvme_path": scratch, "offload.pin_memory": False}),
        quiet=True)
    trainer.step([np.arange(100, dtype=np.int32)])
    with pytest.raises(seqmesh.Error, match="handed to the offloaded optimizer"):
        trainer.model.gradients()
