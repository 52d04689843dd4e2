# The public API of the seqmesh package (python/seqmesh/__init__.py and the _seqmesh extension),
# for type checkers and editors. Keep in step with __init__.py: python/tests/test_package.py checks
# that every name in __all__ is here.
import os
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str
__all__: list[str]

PathLike = Union[str, os.PathLike[str]]
#: One metrics.jsonl record: step, loss, grad_norm, lr, tokens, step_ms, ... (val_loss when
#: evaluated).
Metrics = dict[str, Any]
#: Runs after each step with its metrics; returning False stops the run with a checkpoint.
Callback = Callable[[Metrics], Optional[bool]]
#: A document: token ids as an int32 array or a list of ints.
Document = Union[npt.NDArray[np.int32], Sequence[int]]

class Error(RuntimeError):
    """A run-time failure of seqmesh (the message says what failed and how to fix it)."""

class ConfigError(ValueError):
    """A configuration that cannot run (the command line's message)."""

class ByteTokenizer:
    """Bytes as tokens: ids 0..255 are the bytes, then BOS, EOS and PAD."""
    def __init__(self) -> None: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def bos(self) -> int: ...
    @property
    def eos(self) -> int: ...
    @property
    def pad(self) -> int: ...
    def encode(self, text: str) -> npt.NDArray[np.int32]:
        """The token ids of `text` (UTF-8 bytes), as an int32 array."""
    def decode(self, ids: Document) -> str:
        """The text of `ids` (special tokens dropped)."""

#: The tokenizer of seqmesh's datasets (bytes).
Tokenizer = ByteTokenizer

class Section(Mapping[str, Any]):
    """One section of a Config (``config.training``): its keys as attributes or items."""
    def __getattr__(self, key: str) -> Any: ...
    def __getitem__(self, key: str) -> Any: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...

class Config:
    """A run's configuration: the TOML file, its defaults and overrides, validated."""
    @classmethod
    def load(cls, path: Optional[PathLike] = None,
             overrides: Optional[Mapping[str, Any]] = None) -> Config:
        """The defaults, then the file at `path` (if any), then each ``section.key`` override.
        Raises ConfigError for a config that cannot run."""
    def replace(self, overrides: Mapping[str, Any]) -> Config:
        """A copy of this config with `overrides` applied (validated again)."""
    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Every section and key with its value."""
    def to_toml(self) -> str:
        """The whole config as TOML (what ``--config`` reads)."""
    @property
    def metrics_path(self) -> str:
        """Where the run's metrics.jsonl goes."""
    def __getattr__(self, name: str) -> Section: ...

class Model:
    """The trainer's model: forward, loss, and numpy views of its parameters and gradients."""
    @property
    def config(self) -> Section:
        """The [model] section."""
    def forward(self, tokens: Document,
                cu_seqlens: Optional[Document] = None) -> npt.NDArray[np.float32]:
        """Logits (T, vocab) of `tokens`, documents split at `cu_seqlens` (None: one)."""
    def loss(self, tokens: Document, cu_seqlens: Optional[Document] = None) -> float:
        """The mean next-token cross-entropy over each document's tokens."""
    def parameters(self) -> dict[str, npt.NDArray[np.float32]]:
        """name -> array viewing the parameter's memory (zero copy; writes are seen)."""
    def gradients(self) -> dict[str, npt.NDArray[np.float32]]:
        """name -> array viewing the last step's gradients (zero copy)."""

class Trainer:
    """``seqmesh train`` as an object: one step at a time, on the configured dataset or on
    documents the script brings."""
    config: Config
    model: Model
    def __init__(self, config: Union[Config, PathLike], init_from: Optional[PathLike] = None,
                 resume: bool = False, overwrite: bool = False, quiet: bool = False) -> None: ...
    @property
    def step_count(self) -> int:
        """Steps completed."""
    @property
    def done(self) -> bool:
        """Whether training.steps are done."""
    def step(self, batch: Optional[Sequence[Document]] = None) -> Metrics:
        """One step on the dataset's next batch (None) or on `batch`, a list of documents."""
    def train(self, steps: Optional[int] = None, callback: Optional[Callback] = None,
              batches: Optional[Iterable[Sequence[Document]]] = None) -> list[Metrics]:
        """Steps until training.steps (or `steps` more), then a checkpoint; returns the records.
        A callback returning False stops early (with a checkpoint)."""
    def evaluate(self, dataset: Optional[Sequence[Document]] = None) -> float:
        """The validation loss (NaN without a validation set), or the loss on `dataset`."""
    def save(self, path: Optional[PathLike] = None) -> str:
        """None: a checkpoint in checkpoint.dir; a path: a Hugging Face directory. Returns it."""
    def load(self, path: PathLike) -> None:
        """A checkpoint directory (manifest.json) or a Hugging Face directory (config.json)."""

def prep(inputs: Union[PathLike, Sequence[PathLike]], output: PathLike,
         max_length: Optional[int] = None, jsonl: bool = False, eos: bool = True,
         tokenizer: PathLike = "byte", threads: Optional[int] = None, chat: bool = False,
         chat_template: str = "auto") -> str:
    """``seqmesh prep``: text or JSONL files or folders into the dataset `output` (.bin/.idx/.json)
    with `tokenizer` ("byte", a tokenizer.json or its folder, or a .tiktoken file). Returns
    `output`, for data.path."""

def synth(task: str, lengths: str, count: int, max_length: int, output: PathLike,
          min_length: int = 128, seed: int = 1) -> str:
    """``seqmesh synth``: `count` long-context documents ("passkey" or "recall"). Returns
    `output`."""

def generate(model: PathLike, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0,
             top_p: float = 1.0, top_k: int = 0, seed: int = 0,
             tokenizer: Optional[PathLike] = None, threads: int = 2) -> dict[str, Any]:
    """``seqmesh generate``: continues `prompt` with the model directory (KV cache; greedy, or
    sampled with temperature, top_p, top_k and seed) until EOS or max_new_tokens. Returns the
    --json object: text, ids, prompt_ids, stop, prompt_tokens, new_tokens, tokens/s."""

def eval(model: PathLike, data: PathLike, max_length: Optional[int] = None,
         threads: int = 2) -> dict[str, Any]:
    """``seqmesh eval``: mean token loss and perplexity of the model directory on the dataset
    `data`. Returns the --json object: documents, tokens, max_length, loss, perplexity,
    tokens_per_s."""

def launch_steps(config: Union[Config, PathLike], n: int = 4, max_restarts: int = 0,
                 overrides: Optional[Mapping[str, Any]] = None, resume: bool = False,
                 overwrite: bool = False, oversubscribe: bool = False,
                 summary: Optional[dict[str, Any]] = None) -> Iterator[Metrics]:
    """``seqmesh launch -n N`` as a generator of each new step's metrics. Closing it stops the
    job after its current step with a checkpoint; `summary` is filled at the end (see launch).
    Raises Error when the job fails."""

def launch(config: Union[Config, PathLike], n: int = 4, max_restarts: int = 0,
           overrides: Optional[Mapping[str, Any]] = None, callback: Optional[Callback] = None,
           resume: bool = False, overwrite: bool = False,
           oversubscribe: bool = False) -> dict[str, Any]:
    """Runs the HDP job to its end; returns its summary: steps (this job's records, in order),
    returncode, stopped, checkpoint, attempts, root_cause, seconds, metrics_path. A callback
    returning False stops the job with a checkpoint. Raises Error (with the launcher's reason)
    when the job fails."""
