#!/usr/bin/env python3
"""TensorBoard event files of real runs, read by a reader written from the TFRecord spec (no
TensorFlow, no generated protobuf code): `seqmesh train` and `seqmesh launch -n 2` each write
<checkpoint.dir>/tensorboard/events.out.tfevents.<secs>.<host>; every record's length and data
CRCs hold, the first record is file_version "brain.Event:2", each later one is a step's scalars,
and every scalar equals its metrics.jsonl field as a float32, step by step; a job's mem_mib is
its largest rank's. metrics.tensorboard=false writes no file and the resolved config says so;
--overwrite moves the earlier run's file aside.

Usage: tensorboard_e2e_test.py SEQMESH_BINARY   (Debian's /usr/bin/python3 is enough)
"""

import glob
import json
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_common import check, make_dataset, runner, work_dir, write_config  # noqa: E402

# ---- CRC32C (Castagnoli, reflected 0x82F63B78) and TFRecord's mask, from the spec ----------
_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    _TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


def records(path):
    """The data of each TFRecord in `path`; fails on a bad CRC or a torn record."""
    with open(path, "rb") as f:
        blob = f.read()
    at, out = 0, []
    while at < len(blob):
        check(len(blob) - at >= 16, f"{path}: a torn record header at byte {at}")
        header = blob[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", blob[at + 8:at + 12])
        check(length_crc == masked(crc32c(header)), f"{path}: bad length CRC at byte {at}")
        check(len(blob) - at >= 16 + length, f"{path}: a torn record at byte {at}")
        data = blob[at + 12:at + 12 + length]
        (data_crc,) = struct.unpack("<I", blob[at + 12 + length:at + 16 + length])
        check(data_crc == masked(crc32c(data)), f"{path}: bad data CRC at byte {at}")
        out.append(data)
        at += 16 + length
    return out


# ---- protobuf wire format, by hand ----------------------------------------------------------
def varint(buf, at):
    value, shift = 0, 0
    while True:
        b = buf[at]
        at += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, at
        shift += 7


def fields(buf):
    """(field number, wire type, value) of a message: ints, raw 8/4-byte values, or bytes."""
    at, out = 0, []
    while at < len(buf):
        key, at = varint(buf, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(buf, at)
        elif wire == 1:
            value, at = buf[at:at + 8], at + 8
        elif wire == 2:
            n, at = varint(buf, at)
            value, at = buf[at:at + n], at + n
        elif wire == 5:
            value, at = buf[at:at + 4], at + 4
        else:
            raise AssertionError(f"wire type {wire} is not written by seqmesh")
        out.append((number, wire, value))
    return out


def event(data):
    """Event{double wall_time=1; int64 step=2; string file_version=3; Summary summary=5},
    Summary{repeated Value value=1}, Value{string tag=1; float simple_value=2}."""
    e = {"wall_time": 0.0, "step": 0, "file_version": None, "scalars": None}
    for number, wire, value in fields(data):
        if number == 1 and wire == 1:
            (e["wall_time"],) = struct.unpack("<d", value)
        elif number == 2 and wire == 0:
            e["step"] = value
        elif number == 3 and wire == 2:
            e["file_version"] = value.decode()
        elif number == 5 and wire == 2:
            e["scalars"] = []
            for vn, vw, v in fields(value):
                check(vn == 1 and vw == 2, f"Summary field {vn} (wire {vw})")
                tag, simple = None, None
                for n, w, x in fields(v):
                    if n == 1 and w == 2:
                        tag = x.decode()
                    elif n == 2 and w == 5:
                        (simple,) = struct.unpack("<f", x)
                    else:
                        raise AssertionError(f"Summary.Value field {n} (wire {w})")
                check(tag is not None and simple is not None, "a Value without tag or value")
                e["scalars"].append((tag, simple))
        else:
            raise AssertionError(f"Event field {number} (wire {wire})")
    return e


# ---- the checks -----------------------------------------------------------------------------
def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_run(run_dir, job):
    """The run's one event file against its metrics.jsonl; returns the number of steps."""
    files = glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*"))
    check(len(files) == 1, f"{run_dir}: expected one event file, found {files}")
    name = os.path.basename(files[0])
    secs, host = name[len("events.out.tfevents."):].split(".", 1)
    check(secs.isdigit() and host == socket.gethostname(), f"event file name {name}")
    events = [event(d) for d in records(files[0])]
    check(events and events[0]["file_version"] == "brain.Event:2",
          f"first record: {events[:1]}")
    check(abs(events[0]["wall_time"] - int(secs)) < 2, "file_version's wall_time vs the name")
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    steps = events[1:]
    check(len(steps) == len(metrics), f"{len(steps)} step events, {len(metrics)} records")
    charted = ["loss", "val_loss", "grad_norm", "lr", "tok_per_s", "mfu", "mem_mib"]
    evaluated = 0
    for e, m in zip(steps, metrics):
        check(e["file_version"] is None and e["scalars"] is not None, f"step event {e}")
        check(e["step"] == m["step"], f"event step {e['step']} vs record step {m['step']}")
        got = dict(e["scalars"])
        check(len(got) == len(e["scalars"]), f"repeated tags at step {e['step']}")
        want = {k: m[k] for k in charted if m.get(k) is not None}
        if job:
            want["mem_mib"] = max(x for x in m["rank_mem_mib"] if x is not None)
        # train's and the coordinator's records carry the MFU over this machine's measured peak
        check(0 < want.get("mfu", 0) <= 1, f"step {m['step']}: mfu {m.get('mfu')}")
        check(sorted(got) == sorted(want),
              f"step {e['step']}: tags {sorted(got)} vs {sorted(want)}")
        for tag, value in want.items():
            check(got[tag] == f32(value),
                  f"step {e['step']}: {tag} {got[tag]!r} vs metrics.jsonl {value!r} as float32")
        evaluated += "val_loss" in got
    check(evaluated > 0, f"{run_dir}: no step has a val_loss")
    return len(steps)


def main():
    seqmesh = os.path.abspath(sys.argv[1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with work_dir("tensorboard_e2e_") as work:
        data = make_dataset(seqmesh, work, env)
        config = write_config(
            os.path.join(work, "tiny.toml"),
            training={"steps": 6, "micro_batch_tokens": 512, "log_interval": 1,
                      "eval_interval": 2, "seed": 3},
            optimizer={"lr": 2e-3, "warmup_steps": 2},
            data={"path": data, "validation_fraction": 0.1}, checkpoint={"interval": 3})
        run_ = runner(seqmesh, env)

        def run(*args, what):
            return run_(*args, "--config", config, what=what)

        train = os.path.join(work, "train")
        run("train", f"--checkpoint.dir={train}", what="seqmesh train")
        n = check_run(train, job=False)
        print(f"ok: seqmesh train: {n} steps, every CRC, tag and value as metrics.jsonl")

        # --overwrite moves the earlier run's event file aside with its metrics.
        run("train", f"--checkpoint.dir={train}", "--overwrite", what="seqmesh train --overwrite")
        check_run(train, job=False)
        aside = glob.glob(os.path.join(train, "overwritten-*", "tensorboard", "events.out.*"))
        check(len(aside) == 1, f"--overwrite: the earlier event file is not aside: {aside}")
        print("ok: --overwrite moves tensorboard/ aside; the new run writes one file")

        off = os.path.join(work, "off")
        run("train", f"--checkpoint.dir={off}", "--metrics.tensorboard=false",
            what="seqmesh train --metrics.tensorboard=false")
        check(not os.path.exists(os.path.join(off, "tensorboard")), "tensorboard=false wrote files")
        with open(os.path.join(off, "config.toml")) as f:
            check("tensorboard = false" in f.read(),
                  "the resolved config lacks tensorboard = false")
        with open(os.path.join(train, "config.toml")) as f:
            check("tensorboard = true" in f.read(), "the resolved config lacks tensorboard = true")
        print("ok: --metrics.tensorboard=false writes no event file; config.toml records it")

        job = os.path.join(work, "job")
        run("launch", f"--checkpoint.dir={job}", "-n", "2", what="seqmesh launch -n 2")
        n = check_run(job, job=True)
        print(f"ok: seqmesh launch -n 2: {n} steps written by the coordinator")


if __name__ == "__main__":
    main()
