"""What every generation backend shares: the request and outcome of one reply, and load errors.

No torch here: the Telegram side may import these types without loading a model library.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from inference.progress import ReplyProgress
from inference.sampling import MODEL_CARD, Sampling

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_hub_id(text: str) -> bool:
    """Whether ``text`` has the shape of a hub model id, ``owner/name``."""
    return bool(_HUB_ID.match(text))


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says where it was looked for and what to do."""


@dataclass(frozen=True)
class Request:
    """One text to generate: the dialogue turns (oldest first), when to give up, how to sample, which model.

    ``model`` names one of the generator's loaded models (its path); "" is the chat model. ``progress``, when
    given, gets the reply's text while it is generated and may stop it (its row alone); it plays no part in
    which requests share a batch.
    """

    turns: tuple[str, ...]
    deadline: float
    sampling: Sampling = MODEL_CARD
    model: str = ""
    progress: ReplyProgress | None = field(default=None, compare=False, repr=False)

    @property
    def stopped(self) -> bool:
        """Whether the user stopped this reply (through its progress)."""
        return self.progress is not None and self.progress.stopped

    def outcome(self, text: str, timed_out: bool) -> Outcome:
        """The outcome of this request: a reply the user stopped is not a timeout, whatever the clock says."""
        stopped = self.stopped
        return Outcome(text, timed_out=timed_out and not stopped, stopped=stopped)


@dataclass(frozen=True)
class Outcome:
    """A generated reply (possibly empty), whether the deadline cut it short, and whether the user stopped it.

    A stopped reply's text is what was generated up to the stop.
    """

    text: str
    timed_out: bool = False
    stopped: bool = False


@dataclass(frozen=True)
class BatchStats:
    """What one batched generation did: each row's prompt and reply length in tokens, and how long it took.

    A local backend hands one to its ``on_batch`` hook, when set, after each batch (the benchmark counts with it).
    """

    prompt_tokens: tuple[int, ...]
    new_tokens: tuple[int, ...]
    seconds: float


def check_model_path(model_path: str, *, weights: bool = True) -> None:
    """Fail with a clear message unless ``model_path`` looks like a hub id or a folder with the model's files.

    ``weights=False`` asks only for the tokenizer (a remote server holds the weights).
    """
    path = Path(model_path)
    if not path.exists():
        if is_hub_id(model_path):
            check_hub_model(model_path)
            return
        raise ModelLoadError(
            f"no model at {path.resolve()}: train one with `python train.py --data CHAT.csv --out "
            f"{model_path}`, or set MODEL_PATH to a model directory or a hub id such as tinkoff-ai/ruDialoGPT-small"
        )
    missing = []
    if not (path / "tokenizer.json").is_file() and not (path / "vocab.json").is_file():
        missing.append("tokenizer (tokenizer.json, or vocab.json and merges.txt)")
    if weights and not (path / "config.json").is_file():
        missing.append("config.json")
    if weights and not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        missing.append("weights (model.safetensors)")
    if missing:
        raise ModelLoadError(
            f"could not load the model from {path}: it has no {', '.join(missing)}; "
            "point MODEL_PATH at a folder that train.py wrote (or save_pretrained)"
        )


def check_hub_model(repo_id: str) -> None:
    """Fail at once, naming the missing local folder too, unless the hub has (or the cache holds) ``repo_id``.

    transformers retries a file that is in no cache for about 25 s, and does so file after file: offline,
    a mistyped local path that looks like a hub id would take a minute of log lines to fail. One request
    without retries (to the hub transformers would ask, HF_ENDPOINT) tells the same in a moment.
    """
    # Imported here: huggingface_hub is only needed for a hub id, and the Telegram side imports this module.
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    local = f"there is no folder {Path(repo_id).resolve()}"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"))
    except (RepositoryNotFoundError, EntryNotFoundError):
        raise ModelLoadError(
            f"no model {repo_id}: {local}, and the hub has no model of that name; set MODEL_PATH to a model "
            "directory (train.py writes one) or a hub id such as tinkoff-ai/ruDialoGPT-small"
        ) from None
    except Exception as error:  # noqa: BLE001 - network, proxy and offline-mode errors all mean "unreachable"
        raise ModelLoadError(
            f"no model {repo_id}: {local}, and the hub could not be reached to download {repo_id} "
            f"({type(error).__name__}: {error}); check the path, or the network"
        ) from None


class DeviceLike(Protocol):
    """A device as torch or inference.devices names it: its ``type`` is cpu, cuda or mps."""

    type: str


class Backend(Protocol):
    """What the generator needs of any model, local or remote."""

    name: str
    load_seconds: float
    max_positions: int
    generation_defaults: dict[str, object]
    task: str | None

    @property
    def summary(self) -> str:
        """The engine, where it runs and its number format, e.g. ``transformers, cpu, float32``."""
        ...

    def clean_user_text(self, text: str) -> str:
        """The user's text without special tokens or invisible characters."""
        ...


@runtime_checkable
class LocalBackend(Backend, Protocol):
    """A model in this process that generates batches in a worker thread (transformers, CTranslate2)."""

    engine: str
    device: DeviceLike

    def generate(self, requests: Sequence[Request]) -> list[Outcome]:
        """One outcome per request, generated together (they share ``sampling`` and ``model``)."""
        ...


@runtime_checkable
class RemoteBackend(Backend, Protocol):
    """A model on an inference server, asked from the event loop (it batches concurrent requests itself)."""

    async def agenerate(self, request: Request) -> Outcome:
        """One outcome, by the request's deadline."""
        ...

    async def aclose(self) -> None:
        """Close the connections."""
        ...
