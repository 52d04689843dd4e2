"""Stopping a Python-driven run: Ctrl-C (a real SIGINT to a real interpreter) stops after the
current step with a checkpoint and raises KeyboardInterrupt; a callback returning False stops
cleanly with a checkpoint; either way resume=True ends bitwise where an uninterrupted run does."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import seqmesh

from conftest import tiny_overrides

SCRIPT = textwrap.dedent("""
    import json, sys, seqmesh
    config = seqmesh.Config.load(None, json.loads(sys.argv[1]))
    trainer = seqmesh.Trainer(config, quiet=True)
    def tell(metrics):
        print("step", metrics["step"], flush=True)
    trainer.train(callback=tell)
    print("finished", flush=True)
""")


def final_model(run_dir, step):
    with open(os.path.join(run_dir, f"step-{step:08d}", "model.safetensors"), "rb") as f:
        return f.read()


def committed_steps(run_dir):
    return sorted(int(d[5:]) for d in os.listdir(run_dir)
                  if d.startswith("step-") and os.path.exists(os.path.join(run_dir, d,
                                                                           "manifest.json")))


def test_keyboard_interrupt_leaves_a_checkpoint_that_resumes(dataset, tmp_path):
    steps = 60
    # Odd checkpoints only at the interval's multiples: the interrupt's own is the proof.
    more = {"checkpoint.interval": 1000, "model.hidden": 64, "model.ffn": 128}
    overrides = tiny_overrides(tmp_path / "killed", dataset, steps, **more)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(overrides)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    seen = 0
    for line in child.stdout:
        if line.startswith("step"):
            seen = int(line.split()[1])
            if seen >= 3:
                child.send_signal(signal.SIGINT)
                break
    out, err = child.communicate(timeout=120)
    assert child.returncode != 0 and "KeyboardInterrupt" in err, err
    assert "finished" not in out
    stopped = committed_steps(overrides["checkpoint.dir"])
    assert len(stopped) == 1 and seen <= stopped[0] < steps, (stopped, err)
    assert f"stopped after step {stopped[0]}" in err

    resumed = seqmesh.Trainer(seqmesh.Config.load(None, overrides), resume=True, quiet=True)
    assert resumed.step_count == stopped[0]
    resumed.train()

    whole = seqmesh.Trainer(seqmesh.Config.load(None, tiny_overrides(tmp_path / "whole", dataset,
                                                                     steps, **more)), quiet=True)
    whole.train()
    assert final_model(overrides["checkpoint.dir"], steps) == final_model(
        whole.config.checkpoint.dir, steps)


def test_a_callback_returning_false_stops_with_a_checkpoint(tiny):
    config = tiny("stop", steps=8, **{"checkpoint.interval": 100})
    trainer = seqmesh.Trainer(config, quiet=True)
    seen = []
    records = trainer.train(callback=lambda m: seen.append(m["step"]) or m["step"] < 3)
    assert seen == [1, 2, 3] and [r["step"] for r in records] == [1, 2, 3]
    assert committed_steps(config.checkpoint.dir) == [3]
    resumed = seqmesh.Trainer(config, resume=True, quiet=True)
    assert resumed.step_count == 3
    assert [r["step"] for r in resumed.train()] == [4, 5, 6, 7, 8]
    whole = seqmesh.Trainer(tiny("whole", steps=8, **{"checkpoint.interval": 100}), quiet=True)
    whole.train()
    assert final_model(config.checkpoint.dir, 8) == final_model(whole.config.checkpoint.dir, 8)


def test_train_on_batches_from_the_script_stops_when_they_end(tiny):
    trainer = seqmesh.Trainer(tiny("own", steps=10, with_data=False), quiet=True)
    batches = ([[1, 2, 3, 4] * (k + 1)] for k in range(4))
    records = trainer.train(batches=batches)
    assert [r["tokens"] for r in records] == [4, 8, 12, 16]
    assert committed_steps(trainer.config.checkpoint.dir) == [2, 4]
