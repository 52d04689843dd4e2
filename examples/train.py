#!/usr/bin/env python3
"""Training a byte-level Llama from Python on text the script reads and batches itself.

    scripts/gather-text.sh        # data/example/text: text every Debian machine has
    PYTHONPATH=build/python /usr/bin/python3 examples/train.py --steps 50 --out runs/py

The config is examples/text.toml (or --config) with overrides; the documents come from Python
(read, tokenized with seqmesh.Tokenizer, batched as int32 arrays) instead of a `seqmesh prep`
dataset. Writes OUT/run (checkpoint, metrics.jsonl), OUT/hf (a Hugging Face directory) and
OUT/loss.svg, and prints the held-out loss.
"""

import argparse
import os
import random
import tomllib
from xml.sax.saxutils import escape

import numpy as np

import seqmesh

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_documents(folder, tokenizer, max_tokens):
    """Every file under `folder` as token ids ending with EOS, in pieces of at most `max_tokens`
    (a micro-batch's capacity: the trainer would cut a longer document and lose its tail)."""
    docs = []
    for where, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            with open(os.path.join(where, name), encoding="utf-8", errors="replace") as f:
                ids = np.append(tokenizer.encode(f.read()), np.int32(tokenizer.eos))
            docs += [ids[i:i + max_tokens] for i in range(0, len(ids), max_tokens)]
    return docs


def batches(docs, batch_tokens, seed):
    """Endless batches of whole documents, up to `batch_tokens` tokens each, reshuffled every
    pass over the documents."""
    rng = random.Random(seed)
    while True:
        order = rng.sample(docs, len(docs))
        batch, tokens = [], 0
        for doc in order:
            if batch and tokens + len(doc) > batch_tokens:
                yield batch
                batch, tokens = [], 0
            batch.append(doc)
            tokens += len(doc)
        yield batch


def write_svg(path, losses, width=640, height=360, pad=48):
    """The loss per step as an SVG polyline (one point per step), axes labelled by hand."""
    lo, hi = min(losses), max(losses)
    x = lambda i: pad + i * (width - 2 * pad) / max(len(losses) - 1, 1)
    y = lambda v: height - pad - (v - lo) * (height - 2 * pad) / ((hi - lo) or 1.0)
    points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(losses))
    text = lambda tx, ty, s, anchor="middle": (
        f'<text x="{tx:.0f}" y="{ty:.0f}" text-anchor="{anchor}">{escape(s)}</text>')
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                f'font-family="sans-serif" font-size="12">\n'
                f'<rect width="100%" height="100%" fill="white"/>\n'
                f'<path d="M{pad},{pad} V{height - pad} H{width - pad}" stroke="black" '
                f'fill="none"/>\n'
                f'{text(width / 2, height - 12, f"step (1..{len(losses)})")}\n'
                f'{text(pad - 6, y(hi) + 4, f"{hi:.2f}", "end")}\n'
                f'{text(pad - 6, y(lo) + 4, f"{lo:.2f}", "end")}\n'
                f'{text(width / 2, 24, "training loss")}\n'
                f'<polyline points="{points}" fill="none" stroke="steelblue" '
                f'stroke-width="1.5"/>\n</svg>\n')


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=os.path.join(ROOT, "examples", "text.toml"))
    p.add_argument("--text", default=os.path.join(ROOT, "data", "example", "text"),
                   help="a folder of text files (scripts/gather-text.sh makes the default)")
    p.add_argument("--steps", type=int, help="training.steps (default: the config's)")
    p.add_argument("--out", default="runs/train-py")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="any other override, the value in TOML (e.g. --set model.layers=2)")
    args = p.parse_args()
    if not os.path.isdir(args.text):
        p.error(f"no text folder '{args.text}': run scripts/gather-text.sh or pass --text DIR")

    overrides = {k: tomllib.loads(f"v = {v}")["v"] for k, v in (s.split("=", 1) for s in args.set)}
    overrides.update({"checkpoint.dir": os.path.join(args.out, "run"),
                      "data.path": ""})  # the batches come from this script, not a dataset
    config = seqmesh.Config.load(args.config, overrides)
    if args.steps is not None:  # a short run warms up for at most a tenth of its steps
        config = config.replace({"training.steps": args.steps, "optimizer.warmup_steps":
                                 min(config.optimizer.warmup_steps, args.steps // 10)})

    tokenizer = seqmesh.Tokenizer()
    docs = read_documents(args.text, tokenizer, config.training.micro_batch_tokens)
    held_out, train = docs[::20], [d for i, d in enumerate(docs) if i % 20]  # 1 in 20 held out
    held_out = held_out[:64]  # evaluated at the end: 64 documents say enough in seconds
    print(f"{len(train)} training and {len(held_out)} held-out documents, "
          f"{sum(map(len, docs))} tokens")

    # overwrite: running again into the same --out moves the earlier run aside.
    trainer = seqmesh.Trainer(config, overwrite=True, quiet=True)
    losses = []

    def report(metrics):
        losses.append(metrics["loss"])
        if metrics["step"] % config.training.log_interval == 0 or metrics["step"] == 1:
            print(f"step {metrics['step']:5d}  loss {metrics['loss']:.4f}  "
                  f"lr {metrics['lr']:.2e}  {metrics['step_ms']:.0f} ms")

    trainer.train(callback=report,
                  batches=batches(train, config.training.global_batch_tokens, config.training.seed))

    write_svg(os.path.join(args.out, "loss.svg"), losses)
    checkpoint = trainer.save()  # train ended with one: this names it
    hf = trainer.save(os.path.join(args.out, "hf"))
    print(f"checkpoint {checkpoint}; Hugging Face directory {hf}; plot {args.out}/loss.svg")
    print(f"held-out loss {trainer.evaluate(held_out):.4f} "
          f"(first step's training loss {losses[0]:.4f})")


if __name__ == "__main__":
    main()
