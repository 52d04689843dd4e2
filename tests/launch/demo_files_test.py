#!/usr/bin/env python3
"""What the demo writes, validated (issue 19): the demo's job (examples/hdp.toml on the text
scripts/demo.sh gathers and tokenizes, `seqmesh launch -n 4`), run for 4 steps with validation
every 2, then its Perfetto traces checked by trace_e2e_test's validator (the Trace Event Format,
nesting, what each step did), its TensorBoard events by tensorboard_e2e_test's reader written
from the TFRecord spec (CRCs, tags, every value equal to metrics.jsonl's), and `seqmesh report`
and its PNGs by report_e2e_test's PNG reader.

Usage: demo_files_test.py SEQMESH_BINARY   (Debian's /usr/bin/python3 is enough)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report_e2e_test  # noqa: E402
from e2e_common import runner, work_dir  # noqa: E402
import tensorboard_e2e_test  # noqa: E402
import trace_e2e_test  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    seqmesh = os.path.abspath(sys.argv[1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with work_dir("demo_files_") as work:
        run = runner(seqmesh, env, cwd=ROOT)

        # As scripts/demo.sh does: the machine's own text, documents cut at 4,096 tokens.
        run(os.path.join(ROOT, "scripts", "gather-text.sh"), os.path.join(work, "text"),
            what="scripts/gather-text.sh")
        data = os.path.join(work, "hdp")
        run("prep", "--max-length", "4096", "--output", data, os.path.join(work, "text"),
            what="seqmesh prep")
        job = os.path.join(work, "run")
        run("launch", "-n", "4", "--config", os.path.join(ROOT, "examples", "hdp.toml"),
            f"--checkpoint.dir={job}", f"--data.path={data}", "--training.steps=4",
            "--training.eval_interval=2", "--data.validation_fraction=0.02",
            "--checkpoint.interval=2", "--optimizer.warmup_steps=2",
            what="the demo's job (4 steps)")

        total, _, counts = trace_e2e_test.check_rank_files(job, world=4, steps=4)
        print(f"ok: the demo's traces: 4 ranks, {total} events, valid and nested; {counts}")
        n = tensorboard_e2e_test.check_run(job, job=True)
        print(f"ok: the demo's TensorBoard events: {n} steps, every CRC, tag and value")
        out = run("report", job, what="seqmesh report")
        report_e2e_test.check_report(job, out, world=4, val=True)
        print("ok: the demo's report: summary = metrics.jsonl; its PNGs decode and chart the run")


if __name__ == "__main__":
    main()
