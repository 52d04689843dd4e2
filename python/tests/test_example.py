"""examples/train.py, run as a user would (a subprocess), for a few steps of a tiny model on
generated text: it writes its checkpoint, Hugging Face directory and an SVG loss plot with one
point per step."""

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import seqmesh

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 5


def test_train_example(tmp_path):
    text = tmp_path / "text"
    text.mkdir()
    for i in range(1, 61):
        line = f"doc {i}: the quick brown fox jumps over the lazy dog {i % 7}\n"
        (text / f"doc{i:02d}.txt").write_text(line * ((i * 397) % 881 // len(line) + 1))
    out = tmp_path / "out"
    tiny = ["model.hidden=32", "model.layers=2", "model.ffn=64", "training.threads=1",
            "training.global_batch_tokens=2048", "training.micro_batch_tokens=256",
            "training.log_interval=1"]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(seqmesh.__file__)))
    run = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "train.py"), "--text", str(text),
         "--steps", str(STEPS), "--out", str(out)] + [a for s in tiny for a in ("--set", s)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert run.returncode == 0, run.stderr
    printed = [int(s) for s in re.findall(r"^step +(\d+) +loss", run.stdout, re.M)]
    assert printed == list(range(1, STEPS + 1)), run.stdout
    assert re.search(r"held-out loss \d+\.\d+", run.stdout), run.stdout

    assert (out / "run" / f"step-{STEPS:08d}" / "manifest.json").exists()
    assert (out / "run" / "metrics.jsonl").read_text().count("\n") == STEPS
    assert (out / "hf" / "config.json").exists() and (out / "hf" / "model.safetensors").exists()

    svg = ET.parse(out / "loss.svg").getroot()  # valid XML, or this raises
    ns = "{http://www.w3.org/2000/svg}"
    assert svg.tag == ns + "svg"
    (line,) = svg.iter(ns + "polyline")
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(points) == STEPS
    assert [x for x, _ in points] == sorted(x for x, _ in points)
