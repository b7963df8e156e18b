"""What every generation backend shares: the request and outcome of one reply, and load errors.

No torch here: the Telegram side may import these types without loading a model library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says where it was looked for and what to do."""


@dataclass(frozen=True)
class Request:
    """One reply to generate: the dialogue turns (oldest first), when to give up, and the sampling style."""

    turns: tuple[str, ...]
    deadline: float
    style: str = "lively"


@dataclass(frozen=True)
class Outcome:
    """A generated reply (possibly empty) and whether the deadline cut it short."""

    text: str
    timed_out: bool = False


def check_model_path(model_path: str) -> None:
    """Fail with a clear message unless ``model_path`` is an existing path or looks like a hub id."""
    if Path(model_path).exists() or _HUB_ID.match(model_path):
        return
    raise ModelLoadError(
        f"no model at {Path(model_path).resolve()}: train one with `python train.py --data CHAT.csv --out "
        f"{model_path}`, or set MODEL_PATH to a model directory or a hub id such as tinkoff-ai/ruDialoGPT-small"
    )
