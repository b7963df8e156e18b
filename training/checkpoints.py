"""The run's last checkpoint: written whole or not at all, and deleted file by file, never beyond its own files.

A checkpoint folder holds the model and tokenizer files, ``trainer_state.pt`` and, written last, the
marker ``train_py_checkpoint.json`` that lists those files. A folder is train.py's checkpoint only with that
marker (training.options.check_paths refuses any other non-empty folder), and removing one deletes
the listed files alone, then the folder if nothing else is left in it.
"""

from __future__ import annotations

import json
import uuid
from contextlib import suppress
from pathlib import Path

import torch
from transformers import PreTrainedModel

from training.formats import InputError
from training.modeling import save_pretrained
from training.options import CHECKPOINT_MARKER

STATE_FILE = "trainer_state.pt"


def _aside(directory: Path, kind: str) -> Path:
    """A new hidden name next to ``directory`` for a checkpoint being written or replaced."""
    return directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}.{kind}")


def _delete_files(directory: Path, names: list[str]) -> None:
    for name in names:
        (directory / name).unlink(missing_ok=True)
    with suppress(OSError):  # not empty: someone put a file of theirs here, which stays
        directory.rmdir()


def remove(directory: Path) -> None:
    """Delete a checkpoint's own files and then its folder if that is empty; anything else is left alone."""
    marker = directory / CHECKPOINT_MARKER
    if not marker.is_file():
        return
    names = json.loads(marker.read_text(encoding="utf-8"))["files"]
    marker.unlink()
    _delete_files(directory, names)


def _remove_partial(directory: Path, names: list[str]) -> None:
    """Delete what a save killed midway left next to ``directory``: the files a checkpoint has, no others."""
    for partial in directory.parent.glob(f".{directory.name}.*.partial"):
        _delete_files(partial, names)
    for old in directory.parent.glob(f".{directory.name}.*.old"):
        remove(old)


def save(directory: Path, model: PreTrainedModel, tokenizer: object, state: dict) -> None:
    """Write the checkpoint next to the old one, then swap, so a kill never leaves a broken one."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = _aside(directory, "partial")
    partial.mkdir()
    save_pretrained(model, tokenizer, partial)
    torch.save(state, partial / STATE_FILE)
    names = sorted(path.name for path in partial.iterdir())
    (partial / CHECKPOINT_MARKER).write_text(json.dumps({"files": names}), encoding="utf-8")
    if directory.exists():  # the previous checkpoint, or an empty folder (check_paths allows no other)
        old = _aside(directory, "old")
        directory.rename(old)
        partial.rename(directory)
        remove(old)
        if old.exists():  # an empty folder, or one with files someone put there since: those go back
            for entry in old.iterdir():
                if not (directory / entry.name).exists():
                    entry.rename(directory / entry.name)
            with suppress(OSError):
                old.rmdir()
    else:
        partial.rename(directory)
    _remove_partial(directory, names)


def load(directory: Path, fingerprint: str) -> dict | None:
    """The saved trainer state, or None when there is no checkpoint."""
    if not (directory / CHECKPOINT_MARKER).is_file():
        return None
    state_file = directory / STATE_FILE
    try:
        state = torch.load(state_file, weights_only=True)
    except (OSError, RuntimeError, EOFError) as error:
        raise InputError(f"{state_file}: unreadable checkpoint ({error}): delete {directory} to start over") from None
    if state.get("fingerprint") != fingerprint:
        raise InputError(
            f"{directory}: a checkpoint of another run (different data or settings): "
            f"delete it to start over, or pass the same options to resume"
        )
    return state
