"""seqmesh.launch: the HDP job (a coordinator and 2 MPI workers on this machine) from Python.

Its steps arrive in order through the callback, the final checkpoint is the command line's bit for
bit, a callback's False stops the job with a checkpoint that --resume continues, and a job that
cannot run raises seqmesh.Error with the launcher's reason. The tiny model and dataset are those
of tests/launch/hdp_e2e_test.sh (a few seconds per job).
"""

import json
import os
import signal
import subprocess
import sys

import pytest

import seqmesh

from conftest import tiny_overrides, write_documents


def tiny_config(data: str, run_dir: str, steps: int = 6) -> seqmesh.Config:
    return seqmesh.Config.load(None, tiny_overrides(run_dir, data, steps))


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    folder = tmp_path_factory.mktemp("launch") / "text"
    write_documents(folder)
    return folder


@pytest.fixture(scope="module")
def data(text):
    # Documents cut at 512 tokens: each fits on the 2 ranks' 256-token micro-batches.
    return seqmesh.prep(text, text.parent / "data", max_length=512)


def committed(checkpoint: str) -> bool:
    return os.path.exists(os.path.join(checkpoint, "manifest.json"))


def test_launch_reports_each_step_and_matches_the_command_line(data, tmp_path):
    config = tiny_config(data, str(tmp_path / "py"))
    seen = []
    summary = seqmesh.launch(config, n=2, callback=seen.append)
    assert summary["returncode"] == 0 and not summary["stopped"]
    assert [m["step"] for m in summary["steps"]] == [1, 2, 3, 4, 5, 6]
    assert seen == summary["steps"]
    assert all(isinstance(m["loss"], float) for m in seen)
    assert summary["attempts"] == 1 and summary["root_cause"] is None
    assert summary["checkpoint"] == str(tmp_path / "py" / "step-00000006")
    assert committed(summary["checkpoint"])

    # The same config through the `seqmesh launch` executable itself, in another directory.
    cli = tmp_path / "cli"
    config_file = tmp_path / "cli.toml"
    config_file.write_text(config.replace({"checkpoint.dir": str(cli)}).to_toml())
    subprocess.run([seqmesh._binary(), "launch", "--config", str(config_file), "-n", "2"],
                   check=True, capture_output=True, cwd=tmp_path)
    final = cli / "step-00000006"
    assert committed(final)
    with open(final / "model.safetensors", "rb") as a, \
            open(os.path.join(summary["checkpoint"], "model.safetensors"), "rb") as b:
        assert a.read() == b.read(), "the launched job's weights differ from the command line's"
    with open(cli / "metrics.jsonl") as f:
        losses = [json.loads(line)["loss"] for line in f]
    assert losses == [m["loss"] for m in summary["steps"]]


def test_callback_false_stops_the_job_with_a_checkpoint_that_resume_continues(data, tmp_path):
    # Far more than it can run in the moment between step 2 and the stop (a step takes about
    # 10 ms here, and a fast machine ran all of 12 steps before the stop arrived).
    steps = 400
    config = tiny_config(data, str(tmp_path / "run"), steps=steps)
    seen = []

    def callback(metrics):
        seen.append(metrics["step"])
        return metrics["step"] < 2

    summary = seqmesh.launch(config, n=2, callback=callback)
    assert seen == [1, 2], "the callback ran after it returned False"
    assert summary["returncode"] == 0 and summary["stopped"]
    # The job finished the step it was in, then committed a checkpoint of its last step.
    done = [m["step"] for m in summary["steps"]]
    assert done == list(range(1, len(done) + 1)) and 2 <= done[-1] < steps
    assert summary["checkpoint"] == str(tmp_path / "run" / f"step-{done[-1]:08d}")
    assert committed(summary["checkpoint"])

    # The used directory is refused without resume (or overwrite) ...
    with pytest.raises(seqmesh.Error, match="holds an earlier run"):
        seqmesh.launch(config, n=2)
    # ... and resume continues it (to 3 steps further): only this job's steps are reported, not
    # the earlier ones.
    end = done[-1] + 3
    resumed = seqmesh.launch(config, n=2, resume=True, overrides={"training.steps": end})
    assert [m["step"] for m in resumed["steps"]] == list(range(done[-1] + 1, end + 1))
    assert committed(resumed["checkpoint"]) and resumed["checkpoint"].endswith(f"{end:08d}")


def test_launch_steps_generator_closed_early_stops_the_job(data, tmp_path):
    config = tiny_config(data, str(tmp_path / "run"), steps=400)  # more than run before close
    summary = {}
    job = seqmesh.launch_steps(config, n=2, summary=summary)
    first = next(job)
    job.close()
    assert first["step"] == 1
    assert summary["returncode"] == 0 and summary["stopped"] and committed(summary["checkpoint"])


def test_a_job_that_cannot_run_raises_error_with_its_reason(text, tmp_path):
    # Documents of up to 886 tokens need 4 ranks of 256 tokens; the job has 2.
    uncut = seqmesh.prep(text, tmp_path / "uncut")
    config = tiny_config(uncut, str(tmp_path / "run"))
    seen = []
    with pytest.raises(seqmesh.Error, match=r"needs 4 ranks of training\.micro_batch_tokens"):
        seqmesh.launch(config, n=2, callback=seen.append)
    assert seen == []

    summary = {}
    with pytest.raises(seqmesh.Error):
        list(seqmesh.launch_steps(config, n=2, summary=summary))
    assert summary["returncode"] != 0 and summary["checkpoint"] is None


def test_missing_binary_is_named(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQMESH_BINARY", str(tmp_path / "nowhere" / "seqmesh"))
    with pytest.raises(FileNotFoundError, match="SEQMESH_BINARY"):
        seqmesh.launch(tiny_config(data, str(tmp_path / "run")), n=2)


def test_ctrl_c_stops_the_job_with_a_checkpoint(data, tmp_path):
    # A terminal's Ctrl-C: SIGINT to the whole foreground process group. The launcher must see
    # one stop request (the package's SIGTERM), not that and the SIGINT, which together are its
    # "second signal": stop at once, without a checkpoint.
    config_file = tmp_path / "tiny.toml"
    config_file.write_text(tiny_config(data, str(tmp_path / "run"), steps=400).to_toml())
    script = (
        "import json, sys, seqmesh\n"
        "summary = {}\n"
        "try:\n"
        "    for m in seqmesh.launch_steps(sys.argv[1], n=2, summary=summary):\n"
        "        print('step', m['step'], flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print(json.dumps({k: summary[k] for k in ('returncode', 'stopped', 'checkpoint')}))\n")
    job = subprocess.Popen([sys.executable, "-c", script, str(config_file)], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           start_new_session=True)
    for line in job.stdout:
        if line.startswith("step 2"):
            os.killpg(job.pid, signal.SIGINT)
            break
    out = job.stdout.read().strip().splitlines()
    assert job.wait(timeout=120) == 0
    result = json.loads(out[-1])
    assert result["returncode"] == 0 and result["stopped"], result
    assert committed(str(tmp_path / result["checkpoint"]))


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        children = subprocess.run(["pgrep", "-P", str(todo.pop())], capture_output=True,
                                  text=True).stdout.split()
        found += [int(c) for c in children]
        todo += [int(c) for c in children]
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_kill_dash_nine_of_the_script_stops_the_job_with_a_checkpoint(data, tmp_path):
    # The job runs in its own session (above), so nothing would stop it when the script dies;
    # the launcher asks the kernel for SIGTERM on its parent's death: its own clean stop.
    import time
    run_dir = tmp_path / "run"
    config_file = tmp_path / "tiny.toml"
    config = tiny_config(data, str(run_dir), steps=400).replace({"checkpoint.interval": 1000})
    config_file.write_text(config.to_toml())
    script = ("import sys, seqmesh\n"
              "for m in seqmesh.launch_steps(sys.argv[1], n=2):\n"
              "    print('step', m['step'], flush=True)\n")
    job = subprocess.Popen([sys.executable, "-c", script, str(config_file)], cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in job.stdout:
        if line.startswith("step 2"):
            tree = descendants(job.pid)  # the launcher, its coordinator, mpirun, the workers
            job.kill()
            break
    job.wait(timeout=30)
    assert len(tree) >= 4, tree
    deadline = time.monotonic() + 60
    while any(alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in tree), [p for p in tree if alive(p)]
    steps = [d for d in os.listdir(run_dir) if d.startswith("step-") and
             committed(os.path.join(run_dir, d))]
    # The stop's own checkpoint (the interval's would be at step 1000).
    assert len(steps) == 1 and "step-00000002" <= steps[0] < "step-00000400", steps
