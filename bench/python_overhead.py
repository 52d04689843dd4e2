"""A Python-driven step against the command line's, same config and data (issue: Python
package, "within 2%").

Each driver's step time is the interval between consecutive metrics.jsonl records (their
"time" field, written at the end of each step by the one Trainer both drive): it holds the
whole loop, the planner, the step, the record, and for Python the binding, the GIL hand-offs
and the dict. The drivers alternate, `--rounds` times each, on a quiet machine; the figure is
the ratio of the medians (and per round, back to back), the step_ms medians (the step alone),
and the time each driver spends outside the step, which is the driver's own overhead whatever
the machine's noise does to the steps.

  PYTHONPATH=build/python /usr/bin/python3 bench/python_overhead.py \
      --config examples/text.toml --data data/example/hdp --steps 20 --rounds 3

Prints one line per figure.
"""

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import tempfile

import seqmesh


def intervals(metrics_path, skip):
    times, step_ms = [], []
    with open(metrics_path) as f:
        for line in f:
            r = json.loads(line)
            times.append(datetime.datetime.fromisoformat(r["time"].replace("Z", "+00:00")))
            step_ms.append(r["step_ms"])
    gaps = [(b - a).total_seconds() * 1e3 for a, b in zip(times, times[1:])]
    # Outside the step: the driver's loop between the end of one step's record and the start
    # of the next step (the interval less the next step's own time).
    outside = [g - s for g, s in zip(gaps, step_ms[1:])]
    return gaps[skip:], step_ms[skip + 1:], outside[skip:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="examples/text.toml")
    ap.add_argument("--data", default="data/example/hdp")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip", type=int, default=2, help="warm-up intervals left out")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="seqmesh-pybench-")
    overrides = {"training.steps": a.steps, "data.path": a.data, "training.eval_interval": 0,
                 "checkpoint.interval": 0, "training.log_interval": a.steps,
                 "optimizer.warmup_steps": 0}
    gaps = {"cli": [], "python": []}
    inner = {"cli": [], "python": []}
    outside = {"cli": [], "python": []}
    ratios = []  # per round: python's median interval over the cli's, run back to back
    for k in range(a.rounds):
        for driver in ("cli", "python"):
            run_dir = os.path.join(work, f"{driver}-{k}")
            config = seqmesh.Config.load(a.config, {**overrides, "checkpoint.dir": run_dir})
            if driver == "cli":
                path = os.path.join(work, "config.toml")
                with open(path, "w") as f:
                    f.write(config.to_toml())
                subprocess.run([seqmesh._binary(), "train", "--config", path], check=True,
                               stdout=subprocess.DEVNULL)
            else:
                seqmesh.Trainer(config, quiet=True).train()
            g, s, o = intervals(config.metrics_path, a.skip)
            gaps[driver] += g
            inner[driver] += s
            outside[driver] += o
            if driver == "python":
                ratios.append(statistics.median(g) / last_cli)
            else:
                last_cli = statistics.median(g)
            shutil.rmtree(run_dir)
    shutil.rmtree(work)
    med = {d: statistics.median(v) for d, v in gaps.items()}
    med_inner = {d: statistics.median(v) for d, v in inner.items()}
    n = len(gaps["cli"])
    print(f"step interval (median of {n}): cli {med['cli']:.1f} ms, python "
          f"{med['python']:.1f} ms, python/cli {med['python'] / med['cli']:.4f}")
    print(f"per-round python/cli: {' '.join(f'{r:.4f}' for r in ratios)}; median "
          f"{statistics.median(ratios):.4f}")
    print(f"outside the step (median, ms resolution): cli {statistics.median(outside['cli']):.1f}"
          f" ms, python {statistics.median(outside['python']):.1f} ms, mean python "
          f"{statistics.mean(outside['python']):.2f} ms = "
          f"{statistics.mean(outside['python']) / med['python']:.4f} of a step")
    print(f"step_ms (median of {n}): cli {med_inner['cli']:.1f} ms, python "
          f"{med_inner['python']:.1f} ms, python/cli {med_inner['python'] / med_inner['cli']:.4f}")


if __name__ == "__main__":
    main()
