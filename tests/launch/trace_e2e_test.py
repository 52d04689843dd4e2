#!/usr/bin/env python3
"""Perfetto traces of real runs, checked against the Trace Event Format (Google's "Trace Event
Format" document, JSON Array and JSON Object forms) with Python's own json module:
`seqmesh launch -n 4` writes <checkpoint.dir>/trace/rank-RRRRR.gen-G.json per rank, each a JSON
array whose events have the fields their phase needs (X: ts and dur; b/e: cat and id, paired;
M: process and thread names), the rank as pid, complete events of one thread properly nested,
and what a step did: each step once, micro-batches with forward and backward inside their step,
ring passes and their waits (documents longer than one rank's capacity), reduce-scatters of the
gradient buckets, the optimizer update and the checkpoint writes. `seqmesh trace merge` puts all
ranks on one timeline starting at 0 and reads a rank's file cut short by a kill; `seqmesh
train` writes a new file per resume; metrics.trace=false writes none.

Usage: trace_e2e_test.py SEQMESH_BINARY   (Debian's /usr/bin/python3 is enough)
"""

import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_common import check, make_dataset, runner, work_dir, write_config  # noqa: E402


PHASES = {"X", "M", "b", "e"}  # what seqmesh writes, of the format's phases


def validate(events, where):
    """Field rules of the format for each event; returns the complete events per track."""
    check(isinstance(events, list) and events, f"{where}: not a non-empty JSON array")
    tracks, open_async = {}, {}
    for e in events:
        check(isinstance(e, dict), f"{where}: an event that is not an object: {e!r}")
        ph = e.get("ph")
        check(ph in PHASES, f"{where}: phase {ph!r} in {e}")
        check(isinstance(e.get("name"), str) and e["name"], f"{where}: no name: {e}")
        check(isinstance(e.get("pid"), int) and isinstance(e.get("tid"), int),
              f"{where}: pid and tid must be integers: {e}")
        if ph == "M":
            check(e["name"] in ("process_name", "process_sort_index", "thread_name"),
                  f"{where}: metadata {e['name']}")
            check(isinstance(e.get("args"), dict) and e["args"], f"{where}: metadata args: {e}")
            continue
        check(isinstance(e.get("ts"), int) and e["ts"] >= 0, f"{where}: ts: {e}")
        check(isinstance(e.get("cat"), str) and e["cat"], f"{where}: cat: {e}")
        if "args" in e:
            check(isinstance(e["args"], dict), f"{where}: args must be an object: {e}")
        if ph == "X":
            check(isinstance(e.get("dur"), int) and e["dur"] >= 0, f"{where}: dur: {e}")
            tracks.setdefault((e["pid"], e["tid"]), []).append(e)
        else:
            key = (e["pid"], e["cat"], e.get("id"), e["name"])
            check(isinstance(e.get("id"), int), f"{where}: async event without an id: {e}")
            if ph == "b":
                check(key not in open_async, f"{where}: async {key} begun twice")
                open_async[key] = e["ts"]
            else:
                check(key in open_async, f"{where}: async end without a begin: {e}")
                check(e["ts"] >= open_async.pop(key), f"{where}: async {key} ends before it begins")
    check(not open_async, f"{where}: async events never ended: {sorted(open_async)[:3]}")
    for track, xs in tracks.items():  # slices of one thread nest: Perfetto requires it
        stack = []
        for e in sorted(xs, key=lambda e: (e["ts"], -e["dur"])):
            while stack and e["ts"] >= stack[-1]["ts"] + stack[-1]["dur"]:
                stack.pop()
            if stack:
                top = stack[-1]
                check(e["ts"] + e["dur"] <= top["ts"] + top["dur"],
                      f"{where}: {e['name']} at {e['ts']}+{e['dur']} overlaps {top['name']} at "
                      f"{top['ts']}+{top['dur']} on track {track} without nesting")
            stack.append(e)
    return tracks


def inside(e, outer):
    return outer["ts"] <= e["ts"] and e["ts"] + e["dur"] <= outer["ts"] + outer["dur"]


def check_rank_files(run_dir, world, steps):
    files = sorted(glob.glob(os.path.join(run_dir, "trace", "rank-*.json")))
    check(len(files) == world, f"{run_dir}: {len(files)} rank traces, expected {world}: {files}")
    counts = {"ring forward pass": 0, "wait for K/V": 0, "reduce-scatter": 0}
    total = metadata = 0
    for path in files:
        m = re.fullmatch(r"rank-(\d{5})\.gen-(\d+)\.json", os.path.basename(path))
        check(m, f"trace file name {path}")
        rank = int(m.group(1))
        with open(path) as f:
            events = json.load(f)  # a complete file is valid JSON (closed by the rank)
        total += len(events)
        metadata += sum(1 for e in events if e["ph"] == "M")
        tracks = validate(events, path)
        check({e["pid"] for e in events} == {rank}, f"{path}: pid is not the rank {rank}")
        names = [e["args"]["name"] for e in events if e["name"] == "process_name"]
        check(len(names) == 1 and names[0].startswith(f"rank {rank} ("), f"{path}: {names}")
        xs = [e for t in tracks.values() for e in t]
        step_events = [e for e in xs if e["cat"] == "step" and e["name"].startswith("step ")]
        check(sorted(e["args"]["step"] for e in step_events) == list(range(1, steps + 1)),
              f"{path}: step events {[e['name'] for e in step_events]}")
        by_name = {}
        for e in xs:
            by_name.setdefault(e["name"], []).append(e)
        for need in ("get plan", "forward", "backward", "optimizer update", "checkpoint",
                     "wait for gradient reductions", "report metrics"):
            check(need in by_name, f"{path}: no '{need}' event")
        check(sorted(e["args"]["step"] for e in by_name["checkpoint"]) == [2, 4],
              f"{path}: checkpoint events {by_name['checkpoint']}")
        micro = by_name.get("micro-batch", []) + by_name.get("micro-batch (ring)", [])
        check(micro, f"{path}: no micro-batch")
        for e in micro + by_name["forward"] + by_name["backward"]:
            check(any(inside(e, s) for s in step_events), f"{path}: {e} outside every step")
        for e in by_name["forward"]:
            check(any(inside(e, m) for m in micro), f"{path}: a forward outside its micro-batch")
        for name in counts:
            counts[name] += len(by_name.get(name, []))
        counts["reduce-scatter"] += sum(1 for e in events if e["ph"] == "b")
    check(counts["ring forward pass"] > 0 and counts["wait for K/V"] > 0,
          f"no ring passes in a run with rings: {counts}")
    check(counts["reduce-scatter"] > 0, f"no reduce-scatter of a gradient bucket: {counts}")
    return total, metadata, counts


def main():
    seqmesh = os.path.abspath(sys.argv[1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with work_dir("trace_e2e_") as work:
        data = make_dataset(seqmesh, work, env)
        config = write_config(
            os.path.join(work, "tiny.toml"),
            training={"steps": 4, "micro_batch_tokens": 256}, optimizer={"warmup_steps": 0},
            data={"path": data}, checkpoint={"interval": 2})
        run = runner(seqmesh, env)

        job = os.path.join(work, "job")
        run("launch", "--config", config, f"--checkpoint.dir={job}", "-n", "4",
            what="seqmesh launch -n 4")
        total, metadata, counts = check_rank_files(job, world=4, steps=4)
        print(f"ok: launch -n 4: 4 rank traces, {total} events, valid and nested; {counts}")

        out = run("trace", "merge", job, what="seqmesh trace merge")
        merged_path = os.path.join(job, "trace", "merged.json")
        check(merged_path in out, f"merge did not name its output: {out}")
        with open(merged_path) as f:
            merged = json.load(f)
        check(isinstance(merged, dict) and merged.get("displayTimeUnit") == "ms",
              "merged: not the JSON Object Format")
        events = merged["traceEvents"]
        validate(events, merged_path)
        check({e["pid"] for e in events} == {0, 1, 2, 3}, "merged: not every rank")
        check(min(e["ts"] for e in events if "ts" in e) == 0, "merged: does not start at 0")
        timed = sum(1 for e in events if e["ph"] != "M")
        check(timed == total - metadata, f"merged: {timed} timed events of {total - metadata}")
        print(f"ok: trace merge: {len(events)} events of 4 ranks on one timeline from 0")

        # A rank killed while writing leaves its file open and maybe cut inside an event: the
        # merge reads it up to its last complete event.
        cut_dir = os.path.join(work, "cut")
        os.makedirs(cut_dir)
        src = sorted(glob.glob(os.path.join(job, "trace", "rank-*.json")))[1]
        with open(src) as f:
            body = f.read()
        n_src = len(json.loads(body))
        at = body.rfind(",\n{", 0, len(body) // 2)
        with open(os.path.join(cut_dir, os.path.basename(src)), "w") as f:
            f.write(body[:at + 20])  # a comma, then part of an event; no closing ']'
        out = run("trace", "merge", cut_dir, "--output", os.path.join(work, "cut.json"),
                  what="seqmesh trace merge (cut file)")
        with open(os.path.join(work, "cut.json")) as f:
            got = json.load(f)["traceEvents"]
        want = len(json.loads(body[:at] + "\n]"))
        check(0 < want < n_src, "the cut is not inside the file")
        check(len(got) == want, f"cut file: {len(got)} events merged, {want} complete")
        print(f"ok: a file cut inside an event merges its {want} complete events")

        train = os.path.join(work, "train")
        run("train", "--config", config, f"--checkpoint.dir={train}", "--training.steps=2",
            what="seqmesh train")
        run("train", "--config", config, f"--checkpoint.dir={train}", "--resume",
            what="seqmesh train --resume")
        files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(train, "trace", "*")))
        check(files == ["rank-00000.gen-0.json", "rank-00000.gen-1.json"], f"train: {files}")
        for name, steps in (("rank-00000.gen-0.json", [1, 2]), ("rank-00000.gen-1.json", [3, 4])):
            with open(os.path.join(train, "trace", name)) as f:
                events = json.load(f)
            validate(events, name)
            got = sorted(e["args"]["step"] for e in events if e["name"].startswith("step "))
            check(got == steps, f"train {name}: steps {got}, expected {steps}")
        print("ok: train writes a trace per resume, each with its own steps")

        off = os.path.join(work, "off")
        run("train", "--config", config, f"--checkpoint.dir={off}", "--metrics.trace=false",
            what="seqmesh train --metrics.trace=false")
        check(not os.path.exists(os.path.join(off, "trace")), "metrics.trace=false wrote a trace")
        print("ok: --metrics.trace=false writes no trace")


if __name__ == "__main__":
    main()
