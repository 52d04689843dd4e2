#!/usr/bin/env python3
"""`seqmesh report` on real runs, its charts rendered headless and read back: the PNGs decoded
with a reader written here from the PNG specification (chunks and their CRCs, zlib, the five
row filters), the SVGs parsed as XML. A `train` run with validation and a 2-rank `launch` job
that is resumed once: the summary's figures equal metrics.jsonl's; each chart is 800x450; the
loss curve's pixels sit higher on the left than on the right (the loss fell), validation
markers are drawn, and the job's per-rank chart holds one colour per rank.

Usage: report_e2e_test.py SEQMESH_BINARY   (Debian's /usr/bin/python3 is enough)
"""

import json
import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_common import check, make_dataset, runner, work_dir, write_config  # noqa: E402


def read_png(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA PNG."""
    with open(path, "rb") as f:
        blob = f.read()
    check(blob[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG signature")
    at, idat, ihdr = 8, b"", None
    while at < len(blob):
        (n,) = struct.unpack(">I", blob[at:at + 4])
        kind, data = blob[at + 4:at + 8], blob[at + 8:at + 8 + n]
        (crc,) = struct.unpack(">I", blob[at + 8 + n:at + 12 + n])
        check(crc == zlib.crc32(kind + data) & 0xFFFFFFFF, f"{path}: bad CRC in {kind}")
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
        elif kind == b"IEND":
            break
        at += 12 + n
    check(ihdr is not None, f"{path}: no IHDR")
    w, h, depth, color, _, _, interlace = ihdr
    check(depth == 8 and color in (2, 6) and interlace == 0, f"{path}: IHDR {ihdr}")
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    check(len(raw) == h * (stride + 1), f"{path}: {len(raw)} bytes of rows for {w}x{h}")
    rows, prev = [], bytearray(stride)
    for y in range(h):
        at = y * (stride + 1)
        ftype, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            else:
                check(ftype == 0, f"{path}: filter type {ftype}")
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


def near(p, rgb, tol=40):
    return sum((a - b) ** 2 for a, b in zip(p, rgb)) <= tol * tol


BLUE, ORANGE = (31, 120, 181), (255, 128, 13)  # launch/report_command.cc's first two colours
GREEN, RED = (43, 161, 43), (214, 38, 41)  # its third and fourth
RANK_COLOURS = [BLUE, ORANGE, GREEN, RED]


def pixels(rows, rgb, x0, x1, y0=44, y1=394):
    return [(x, y) for y in range(y0, y1) for x in range(x0, x1) if near(rows[y][x], rgb)]


def check_svg(path):
    root = ET.parse(path).getroot()
    check(root.tag.endswith("svg"), f"{path}: root {root.tag}")
    check(root.get("width", "").startswith("800") and root.get("height", "").startswith("450"),
          f"{path}: size {root.get('width')}x{root.get('height')}")


def check_report(run_dir, out, world, val):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    summary = open(os.path.join(run_dir, "report", "summary.txt")).read()
    check(summary in out, "the printed summary differs from summary.txt")
    check(f"steps: {len(records)} recorded, the last {records[-1]['step']}" in summary, summary)
    check(f"ranks: {world}" in summary, summary)
    check(f"tokens: {sum(r['tokens'] for r in records)}" in summary, summary)
    last = float(re.search(r"loss: \S+ at step 1, (\S+) at step", summary).group(1))
    check(abs(last - records[-1]["loss"]) <= 1e-3 * abs(records[-1]["loss"]), summary)
    if val:
        vals = [(r["val_loss"], r["step"]) for r in records if r.get("val_loss") is not None]
        best = min(vals)
        got = re.search(r"val_loss: best (\S+) at step (\d+)", summary)
        check(got and int(got.group(2)) == best[1] and abs(float(got.group(1)) - best[0]) < 1e-3,
              f"best val_loss {best}: {summary}")
    committed = [d for d in os.listdir(run_dir) if d.startswith("step-")
                 and os.path.exists(os.path.join(run_dir, d, "manifest.json"))]
    check(f"checkpoints: {len(committed)}," in summary, summary)
    names = ["loss", "throughput"]
    if world > 1:
        names += ["rank_step_time", "simulated_step_time"]
    for name in names:
        check_svg(os.path.join(run_dir, "report", name + ".svg"))
        w, h, _ = read_png(os.path.join(run_dir, "report", name + ".png"))
        check((w, h) == (800, 450), f"{name}.png is {w}x{h}")
    w, h, rows = read_png(os.path.join(run_dir, "report", "loss.png"))
    left, right = pixels(rows, BLUE, 72, 180), pixels(rows, BLUE, 670, 776)
    check(left and right, f"loss.png: no loss curve pixels ({len(left)}, {len(right)})")
    mean = lambda ps: sum(y for _, y in ps) / len(ps)
    check(mean(left) < mean(right),
          f"loss.png: the curve does not fall ({mean(left)} vs {mean(right)})")
    if val:
        check(len(pixels(rows, ORANGE, 72, 600)) > 20, "loss.png: no validation markers")
    if world > 1:
        _, _, rows = read_png(os.path.join(run_dir, "report", "rank_step_time.png"))
        # One line per rank, drawn in rank order: a rank whose step times equal a later rank's
        # is covered by that rank's line (a 4-rank demo of 4 steps did that), so each rank must
        # have its legend swatch (right of x = 600), the lines together many pixels, and at
        # least two ranks' lines must show.
        colours = RANK_COLOURS[:min(world, 4)]
        lines = [len(pixels(rows, rgb, 72, 600)) for rgb in colours]
        check(sum(lines) > 50, f"rank_step_time.png: no rank lines ({lines})")
        check(sum(n > 0 for n in lines) >= 2, f"rank_step_time.png: one rank line shows ({lines})")
        for rgb in colours:
            check(pixels(rows, rgb, 600, 780), f"rank_step_time.png: no legend entry {rgb}")
    return summary


def main():
    seqmesh = os.path.abspath(sys.argv[1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with work_dir("report_e2e_") as work:
        data = make_dataset(seqmesh, work, env)
        config = write_config(
            os.path.join(work, "tiny.toml"),
            training={"steps": 10, "micro_batch_tokens": 512, "eval_interval": 2},
            optimizer={"lr": 3e-3, "warmup_steps": 0},
            data={"path": data, "validation_fraction": 0.1}, checkpoint={"interval": 4})
        run = runner(seqmesh, env)

        train = os.path.join(work, "train")
        run("train", "--config", config, f"--checkpoint.dir={train}", what="seqmesh train")
        out = run("report", train, what="seqmesh report (train)")
        check_report(train, out, world=1, val=True)
        print("ok: report of train: summary = metrics.jsonl; PNGs decode; the loss curve falls")

        job = os.path.join(work, "job")
        run("launch", "--config", config, f"--checkpoint.dir={job}", "-n", "2",
            "--training.steps=8", what="seqmesh launch -n 2")
        run("launch", "--config", config, f"--checkpoint.dir={job}", "-n", "2", "--resume",
            what="seqmesh launch -n 2 --resume")
        out = run("report", job, what="seqmesh report (job)")
        summary = check_report(job, out, world=2, val=True)
        check("restarts: 1 (" in summary, f"a resumed job is one restart: {summary}")
        print("ok: report of a resumed 2-rank job: per-rank and simulated step-time charts")

        p = subprocess.run([seqmesh, "report", os.path.join(work, "nothing")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        check(p.returncode == 1 and "is this a run directory" in p.stdout, p.stdout)
        print("ok: a directory without metrics.jsonl is refused in one line")


if __name__ == "__main__":
    main()
