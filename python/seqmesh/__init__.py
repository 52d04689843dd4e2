"""seqmesh from Python: configs, steps, callbacks, numpy views and HDP jobs.

The same Trainer as ``seqmesh train`` (a script's steps are the command line's, bit for bit),
driven one step at a time::

    import seqmesh
    config = seqmesh.Config.load("examples/text.toml", overrides={"training.steps": 50})
    trainer = seqmesh.Trainer(config)
    trainer.train(callback=lambda m: print(m["step"], m["loss"]))
    print(trainer.evaluate())

Errors: ``seqmesh.ConfigError`` (a ValueError) for a config that cannot run, ``ValueError`` for
bad arguments and arrays, ``OSError`` for files, ``seqmesh.Error`` (a RuntimeError) for run-time
failures. docs/PYTHON.md has the whole API.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from . import _seqmesh
from ._seqmesh import ByteTokenizer, ConfigError, Error

__version__: str = _seqmesh.__version__
__all__ = [
    "ByteTokenizer", "Config", "ConfigError", "Error", "Model", "Tokenizer", "Trainer",
    "eval", "generate", "launch", "launch_steps", "prep", "synth", "__version__",
]

#: The tokenizer of seqmesh's datasets (bytes; the BPE tokenizers come with fine-tuning).
Tokenizer = ByteTokenizer

PathLike = Union[str, "os.PathLike[str]"]
Metrics = dict  # one metrics.jsonl record: step, loss, grad_norm, lr, tokens, step_ms, ...
Callback = Callable[[Metrics], Optional[bool]]


def _toml_value(value: Any, key: str) -> str:
    """`value` as a TOML literal (the command line's --section.key=value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (str, os.PathLike)):
        return json.dumps(os.fspath(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, key) for v in value) + "]"
    raise ConfigError(f"override {key!r}: a {type(value).__name__} has no TOML form; "
                      "pass a bool, int, float, str or list")


def _overrides(overrides: Optional[Mapping[str, Any]]) -> list[str]:
    out = []
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or "." not in key:
            raise ConfigError(f"override key {key!r} must look like 'section.key' "
                              "(e.g. 'training.steps')")
        out.append(f"{key}={_toml_value(value, key)}")
    return out


class Section(Mapping[str, Any]):
    """One section of a Config (``config.training``): read its keys as attributes."""

    def __init__(self, name: str, values: dict):
        self._name, self._values = name, values

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"[{self._name}] has no key {key!r}; its keys: "
                                 f"{', '.join(self._values)}") from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {self._values!r})"


class Config:
    """A run's configuration: the TOML file, its defaults and overrides, validated.

    ``Config.load(path, overrides={"training.steps": 10})``; ``config.training.steps``;
    ``config.to_dict()``. A config that cannot run raises ConfigError with the command line's
    message (the key, the value, the fix).
    """

    def __init__(self, _cpp: "_seqmesh._Config"):
        self._cpp = _cpp
        self._dict = tomllib.loads(_cpp.to_toml())

    @classmethod
    def load(cls, path: Optional[PathLike] = None,
             overrides: Optional[Mapping[str, Any]] = None) -> "Config":
        """The defaults, then the file at `path` (if any), then each ``section.key`` override."""
        return cls(_seqmesh._Config.load(os.fspath(path) if path is not None else "",
                                         _overrides(overrides)))

    def replace(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy of this config with `overrides` applied (validated again)."""
        text = self._cpp.to_toml()
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        try:
            return Config.load(f.name, overrides)
        finally:
            os.unlink(f.name)

    def to_dict(self) -> dict:
        """Every section and key with its value: {"training": {"steps": ..., ...}, ...}."""
        return json.loads(json.dumps(self._dict))

    def to_toml(self) -> str:
        return self._cpp.to_toml()

    @property
    def metrics_path(self) -> str:
        return self._cpp.metrics_path()

    def __getattr__(self, name: str) -> Section:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return Section(name, self._dict[name])
        except KeyError:
            raise AttributeError(f"a config has no section [{name}]; its sections: "
                                 f"{', '.join(self._dict)}") from None

    def __repr__(self) -> str:
        return f"Config({self._dict!r})"


class Model:
    """The trainer's model: forward, loss, and numpy views of its parameters and gradients."""

    def __init__(self, trainer: "Trainer"):
        self._trainer = trainer

    @property
    def config(self) -> Section:
        return self._trainer.config.model

    def forward(self, tokens: Union[np.ndarray, Sequence[int]],
                cu_seqlens: Optional[Union[np.ndarray, Sequence[int]]] = None) -> np.ndarray:
        """Logits (T, vocab) float32 of `tokens` (T ids), documents split at `cu_seqlens`
        (0, ..., T; None: one document). No gradients; the next step starts afresh."""
        logits, _ = self._trainer._t.forward(tokens, cu_seqlens, True)
        return logits

    def loss(self, tokens: Union[np.ndarray, Sequence[int]],
             cu_seqlens: Optional[Union[np.ndarray, Sequence[int]]] = None) -> float:
        """The mean next-token cross-entropy over each document's tokens."""
        return self._trainer._t.forward(tokens, cu_seqlens, False)[1]

    def parameters(self) -> dict[str, np.ndarray]:
        """name -> float32 array viewing the parameter's memory (zero copy): a write through it
        is what the next forward and step use."""
        return self._trainer._t.parameters()

    def gradients(self) -> dict[str, np.ndarray]:
        """name -> float32 array viewing the gradients of the last step (zero copy)."""
        return self._trainer._t.gradients()


class Trainer:
    """``seqmesh train`` as an object: one step at a time, on the configured dataset or on
    documents the script brings.

    `config`: a Config or a path to a TOML file. `init_from`: a Hugging Face directory to start
    from (its config.json sets the model). `resume`: continue the newest checkpoint in
    checkpoint.dir. `overwrite`: move an earlier run in checkpoint.dir aside. `quiet`: no console.
    """

    def __init__(self, config: Union[Config, PathLike], init_from: Optional[PathLike] = None,
                 resume: bool = False, overwrite: bool = False, quiet: bool = False):
        if not isinstance(config, Config):
            config = Config.load(config)
        self._t = _seqmesh._Trainer(config._cpp, os.fspath(init_from) if init_from else "",
                                    bool(resume), bool(overwrite), bool(quiet))
        # The trainer's own config (init_from's model wins).
        self.config = Config(_seqmesh._Config.parse(self._t.config_toml()))
        self.model = Model(self)

    @property
    def step_count(self) -> int:
        """Steps completed (training.steps is the run's end)."""
        return self._t.step_count

    @property
    def done(self) -> bool:
        return self._t.done

    def step(self, batch: Optional[Sequence[Union[np.ndarray, Sequence[int]]]] = None) -> Metrics:
        """One step; returns its metrics (the metrics.jsonl record). `batch`: None for the
        dataset's next global batch, or a list of documents (int32 arrays or lists of ints) that
        make this step's batch. The GIL is released while it runs; a KeyboardInterrupt that
        arrives meanwhile is raised once the step is done (`train` saves a checkpoint first)."""
        return json.loads(self._t.step(batch))

    def train(self, steps: Optional[int] = None, callback: Optional[Callback] = None,
              batches: Optional[Iterable[Sequence[Union[np.ndarray, Sequence[int]]]]] = None
              ) -> list[Metrics]:
        """Steps until training.steps (or `steps` more), then a checkpoint; returns the records.

        `callback(metrics)` runs after each step; returning False stops the run cleanly with a
        checkpoint. `batches`: an iterable of batches (lists of documents) to train on instead
        of the dataset; the run stops when it ends. Ctrl-C (KeyboardInterrupt) stops after the
        current step with a checkpoint (``Trainer(config, resume=True)`` continues it), then
        re-raises.
        """
        end = self._t.steps if steps is None else min(self._t.steps, self.step_count + steps)
        records: list[Metrics] = []
        source = iter(batches) if batches is not None else None
        try:
            while self.step_count < end:
                batch = None
                if source is not None:
                    batch = next(source, None)
                    if batch is None:
                        break
                record = self.step(batch)
                records.append(record)
                if callback is not None and callback(record) is False:
                    break
        except KeyboardInterrupt:
            where = self._t.save()
            print(f"seqmesh: KeyboardInterrupt: stopped after step {self.step_count}; "
                  f"checkpoint {where} (Trainer(config, resume=True) continues it)",
                  file=sys.stderr)
            raise
        self._t.save()
        return records

    def evaluate(self, dataset: Optional[Sequence[Union[np.ndarray, Sequence[int]]]] = None
                 ) -> float:
        """The loss on the held-out validation set (NaN when there is none), or on `dataset`,
        a list of documents."""
        return self._t.evaluate(dataset)

    def save(self, path: Optional[PathLike] = None) -> str:
        """None: a checkpoint of the run in checkpoint.dir (weights, moments, step, data cursor;
        what resume continues). A path: a Hugging Face directory (config.json and
        model.safetensors, in checkpoint.export_dtype; with the config.json and tokenizer files
        of the directory the model came from, if any) of the weights; for a LoRA run
        (lora.rank >= 1), PEFT's adapter_config.json and adapter_model.safetensors of the
        adapters. Returns the directory."""
        if path is None:
            return self._t.save()
        self._t.save_hf(os.fspath(path))
        return os.fspath(path)

    def load(self, path: PathLike) -> None:
        """A checkpoint directory (step-N, with its manifest.json: weights, moments, step and
        cursor) or a Hugging Face directory (weights only)."""
        path = os.fspath(path)
        if os.path.exists(os.path.join(path, "manifest.json")):
            self._t.load(path)
        elif os.path.exists(os.path.join(path, "config.json")):
            self._t.load_hf(path)
        elif not os.path.exists(path):
            raise FileNotFoundError(f"the checkpoint directory '{path}' does not exist")
        else:
            raise ValueError(f"'{path}' is neither a checkpoint (no manifest.json) nor a Hugging "
                             "Face directory (no config.json)")


def _run_command(run: Callable[[list[str]], int], name: str, args: list[str]) -> None:
    status = run(args)
    if status != 0:
        raise Error(f"seqmesh {name} ended with status {status}")


def prep(inputs: Union[PathLike, Sequence[PathLike]], output: PathLike,
         max_length: Optional[int] = None, jsonl: bool = False, eos: bool = True,
         tokenizer: PathLike = "byte", threads: Optional[int] = None, chat: bool = False,
         chat_template: str = "auto") -> str:
    """``seqmesh prep``: tokenize text (or JSONL with a "text" field) files or folders into the
    indexed dataset `output` (.bin/.idx, and .json naming the tokenizer) with `tokenizer` ("byte",
    a tokenizer.json or a folder holding one, or a .tiktoken file). With `chat`, the inputs are
    JSONL chat or prompt/completion examples rendered with `chat_template` and a loss mask is
    written (docs/TOKENIZERS.md). Returns `output`, for data.path."""
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not paths:
        raise ValueError("inputs is empty; pass text files or folders")
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(f"prep: input '{os.fspath(p)}' does not exist")
    args = ["--output", os.fspath(output), "--tokenizer", os.fspath(tokenizer)]
    if threads is not None:
        args += ["--threads", str(int(threads))]
    if chat:
        args += ["--chat", "--chat-template", chat_template]
    if max_length is not None:
        args += ["--max-length", str(int(max_length))]
    if jsonl:
        args.append("--jsonl")
    if not eos:
        args.append("--no-eos")
    _run_command(_seqmesh._prep, "prep", args + [os.fspath(p) for p in paths])
    return os.fspath(output)


def synth(task: str, lengths: str, count: int, max_length: int, output: PathLike,
          min_length: int = 128, seed: int = 1) -> str:
    """``seqmesh synth``: `count` long-context documents (task "passkey" or "recall") with
    lengths from `lengths` (byted-like, github-like, a lengths file or a .idx). Returns `output`."""
    if task not in ("passkey", "recall"):
        raise ValueError(f"task must be 'passkey' or 'recall', got {task!r}")
    _run_command(_seqmesh._synth, "synth",
                 ["--task", task, "--lengths", lengths, "--count", str(int(count)),
                  "--max-length", str(int(max_length)), "--min-length", str(int(min_length)),
                  "--seed", str(int(seed)), "--output", os.fspath(output)])
    return os.fspath(output)


def _model_dir(model: PathLike) -> str:
    model = os.fspath(model)
    if not os.path.isdir(model):
        raise FileNotFoundError(f"the model directory '{model}' does not exist")
    return model


def generate(model: PathLike, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, seed: int = 0,
             tokenizer: Optional[PathLike] = None, threads: int = 2) -> dict[str, Any]:
    """``seqmesh generate``: continues `prompt` with the Hugging Face model directory `model`
    (KV cache; greedy at temperature 0, else sampled with top_p and top_k from `seed`) until the
    tokenizer's EOS or `max_new_tokens`. The tokenizer defaults to the directory's (else the byte
    tokenizer for a 259-id model). Returns the command's --json object: text, ids, prompt_ids,
    stop ("eos" or "max_new_tokens"), prompt_tokens, new_tokens, prefill_tokens_per_s,
    decode_tokens_per_s, tokenizer."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    out = _seqmesh._generate(_model_dir(model), prompt,
                             "" if tokenizer is None else os.fspath(tokenizer),
                             int(max_new_tokens), float(temperature), float(top_p), int(top_k),
                             int(seed), int(threads))
    return json.loads(out)


def eval(model: PathLike, data: PathLike, max_length: Optional[int] = None,  # noqa: A001
         threads: int = 2) -> dict[str, Any]:
    """``seqmesh eval``: the mean token loss and perplexity (exp of it) of the Hugging Face model
    directory `model` on every document of the dataset `data` (a prep PREFIX), counted as the
    trainer's validation loss; documents longer than `max_length` are scored in windows. Returns
    the command's --json object: documents, tokens, max_length, loss, perplexity, tokens_per_s.
    A dataset made with another tokenizer than the model's is refused (seqmesh.Error). (Named
    after the command; inside this module it shadows the builtin.)"""
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    out = _seqmesh._eval(_model_dir(model), os.fspath(data), int(max_length or 0), int(threads))
    return json.loads(out)


def _binary() -> str:
    """The seqmesh executable that runs jobs: $SEQMESH_BINARY, the package's bin/seqmesh (an
    installed package), the build tree's, or seqmesh on PATH."""
    chosen = os.environ.get("SEQMESH_BINARY")
    if chosen:
        # Named explicitly: running some other seqmesh instead would hide the mistake.
        if not os.access(chosen, os.X_OK):
            raise FileNotFoundError(f"SEQMESH_BINARY='{chosen}' is not an executable file")
        return chosen
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(here, "bin", "seqmesh"), _seqmesh._default_binary):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    import shutil
    found = shutil.which("seqmesh")
    if found:
        return found
    raise FileNotFoundError("cannot find the seqmesh executable; set SEQMESH_BINARY to it")


def _stop_with_parent() -> None:
    """In the launcher's process before it starts: SIGHUP when this interpreter dies (kill -9
    included), the launcher's own stop (finish the step, commit a checkpoint, exit), so a job
    in its own session is never orphaned. Not SIGTERM: the kernel sends the signal again each
    time the launcher is handed to another of this process's dying threads, and a second SIGTERM
    is the launcher's stop at once; a repeated SIGHUP is ignored. Its output pipes then have no
    reader: SIGPIPE is ignored so that writing to them fails quietly instead of killing the
    launcher mid-stop."""
    import ctypes
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)


def _read_records(path: str) -> list[Metrics]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines[:-1] if line.strip()]  # complete lines only


def _attempts(lines: Sequence[str]) -> Optional[int]:
    """The attempt count of the launcher's last "job finished after N attempt(s)", "job stopped
    with a checkpoint (attempt N)" or root-cause line."""
    import re
    for line in reversed(lines):
        found = re.search(r"after (\d+) attempt\(s\)|\(attempt (\d+)\)", line)
        if found and line.startswith("launch:"):
            return int(found.group(1) or found.group(2))
    return None


def _failure(lines: Sequence[str], returncode: int) -> str:
    """Why a job failed, from the launcher's stderr: its root-cause line, else the last error
    line of any process, else the exit status."""
    lines = [l.strip() for l in lines if l.strip()]
    for line in reversed(lines):
        if "root cause" in line:
            return line
    for line in reversed(lines):
        if "error" in line.lower() or "failed" in line.lower():
            return line
    return f"exit status {returncode}" + (f" (last line: {lines[-1]})" if lines else "")


def launch_steps(config: Union[Config, PathLike], n: int = 4, max_restarts: int = 0,
                 overrides: Optional[Mapping[str, Any]] = None, resume: bool = False,
                 overwrite: bool = False, oversubscribe: bool = False,
                 summary: Optional[dict] = None) -> Iterator[Metrics]:
    """``seqmesh launch -n N``: the HDP job (a coordinator and N MPI workers) as a generator of
    each step's metrics as the coordinator records them (each step once, in order; a step redone
    after a restart is not repeated). Closing the generator (or Ctrl-C) stops the job after its
    current step with a checkpoint. `summary`, if given, is filled with the run's summary at the
    end (see `launch`). Raises Error, naming the launcher's root cause, when the job fails."""
    if not isinstance(config, Config):
        config = Config.load(config)
    if overrides:
        config = config.replace(overrides)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    binary = _binary()
    run_dir = config.checkpoint.dir
    os.makedirs(run_dir, exist_ok=True)
    metrics_path = config.metrics_path
    # Records already in the metrics file are an earlier run's (resume keeps them; --overwrite
    # moves them aside, but possibly after our first read): only records not among them are
    # this job's. Each record has its own "time", so a redone step never equals an old record.
    earlier = {int(r.get("step", -1)): r for r in _read_records(metrics_path)}
    fd, config_file = tempfile.mkstemp(prefix="seqmesh-launch-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(config.to_toml())
    args = [binary, "launch", "--config", config_file, "-n", str(int(n)),
            "--max-restarts", str(int(max_restarts))]
    if resume:
        args.append("--resume")
    if overwrite:
        args.append("--overwrite")
    if oversubscribe:
        args.append("--oversubscribe")
    yielded: set[int] = set()
    final: dict[int, Metrics] = {}  # step -> its last record (a redone step's replaces the first)
    start = time.monotonic()
    stderr_tail: list[str] = []

    def read_new() -> list[Metrics]:
        new = []
        for record in _read_records(metrics_path):
            step = int(record.get("step", -1))
            if earlier.get(step) == record:
                continue
            final[step] = record
            if step not in yielded:
                yielded.add(step)
                new.append(record)
        return new

    # Its own session: a terminal's Ctrl-C reaches the launcher only as the one SIGTERM sent
    # below. Sharing our process group, it would take the SIGINT too, and a SIGINT after the
    # SIGTERM is the launcher's "second signal": stop at once, without the checkpoint.
    try:
        job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               bufsize=1, start_new_session=True,
                               preexec_fn=_stop_with_parent)
    except BaseException:
        os.unlink(config_file)
        raise
    import threading

    def copy(stream, to, keep):
        for line in stream:
            to.write(line)
            to.flush()
            if keep is not None:
                keep.append(line)
                del keep[:-200]

    threads = [threading.Thread(target=copy, args=(job.stdout, sys.stdout, None), daemon=True),
               threading.Thread(target=copy, args=(job.stderr, sys.stderr, stderr_tail),
                                daemon=True)]
    for t in threads:
        t.start()
    stopped = killed = False
    try:
        while True:
            finished = job.poll() is not None
            for record in read_new():
                yield record
            if finished:
                break
            time.sleep(0.1)
    except (GeneratorExit, KeyboardInterrupt):
        # The launcher's own stop: the job finishes its step, commits a checkpoint, exits 0.
        if job.poll() is None:
            stopped = True
            job.send_signal(signal.SIGTERM)
            try:
                job.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: the launcher's stop at once
                job.send_signal(signal.SIGTERM)
                job.wait()
                raise
        raise
    finally:
        if job.poll() is None:  # another exception (thrown in, or a bad metrics line)
            killed = True
            job.kill()
            job.wait()
        for t in threads:
            t.join(timeout=5)
        os.unlink(config_file)
        read_new()  # the steps recorded after a stop request, and redone steps' final records
        if summary is not None:
            checkpoints = sorted(d for d in os.listdir(run_dir) if d.startswith("step-")
                                 and os.path.exists(os.path.join(run_dir, d, "manifest.json")))
            summary.update({
                "returncode": job.returncode, "stopped": stopped,
                "steps": [final[k] for k in sorted(final)],
                "checkpoint": os.path.join(run_dir, checkpoints[-1]) if checkpoints else None,
                "metrics_path": metrics_path, "seconds": time.monotonic() - start,
                "root_cause": next((l.strip() for l in reversed(stderr_tail)
                                    if "root cause" in l), None),
                "attempts": _attempts(stderr_tail),
            })
        # A job that failed, also while stopping, raises Error (from close() too); a stopped
        # job's exception (GeneratorExit, KeyboardInterrupt) goes on otherwise, and so does the
        # exception a killed job was killed for.
        if job.returncode != 0 and not killed:
            raise Error(f"seqmesh launch failed: {_failure(stderr_tail, job.returncode)}")


def launch(config: Union[Config, PathLike], n: int = 4, max_restarts: int = 0,
           overrides: Optional[Mapping[str, Any]] = None, callback: Optional[Callback] = None,
           resume: bool = False, overwrite: bool = False, oversubscribe: bool = False) -> dict:
    """Runs the HDP job to its end and returns its summary: {"steps": [this job's metrics per
    step, in order; a resumed run's earlier steps are not among them], "returncode", "checkpoint" (the newest committed), "attempts", "root_cause" (of a
    restart, if any), "seconds", "metrics_path", "stopped" (True when the callback or Ctrl-C
    stopped the job)}. `callback(metrics)` runs as each step's record arrives; returning False
    stops the job after its current step with a checkpoint. Raises seqmesh.Error (with the
    launcher's root cause) when the job fails."""
    summary: dict = {}
    steps = launch_steps(config, n=n, max_restarts=max_restarts, overrides=overrides,
                         resume=resume, overwrite=overwrite, oversubscribe=oversubscribe,
                         summary=summary)
    try:
        for record in steps:
            if callback is not None and callback(record) is False:
                break
    finally:
        steps.close()  # stops a job still running (with a checkpoint); raises Error if it failed
    return summary
