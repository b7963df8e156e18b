"""What every generation backend shares: the request and outcome of one reply, and load errors.

No torch here: the Telegram side may import these types without loading a model library.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from inference.sampling import MODEL_CARD, Sampling

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says where it was looked for and what to do."""


@dataclass(frozen=True)
class Request:
    """One text to generate: the dialogue turns (oldest first), when to give up, how to sample, which model.

    ``model`` names one of the generator's loaded models (its path); "" is the chat model.
    """

    turns: tuple[str, ...]
    deadline: float
    sampling: Sampling = MODEL_CARD
    model: str = ""


@dataclass(frozen=True)
class Outcome:
    """A generated reply (possibly empty) and whether the deadline cut it short."""

    text: str
    timed_out: bool = False


def check_model_path(model_path: str, *, weights: bool = True) -> None:
    """Fail with a clear message unless ``model_path`` looks like a hub id or a folder with the model's files.

    ``weights=False`` asks only for the tokenizer (a remote server holds the weights).
    """
    path = Path(model_path)
    if not path.exists():
        if _HUB_ID.match(model_path):
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
