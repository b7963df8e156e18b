"""A training run's settings and the checks on its paths; no torch here, so train.py parses and checks at once."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from inference.modes import CHAT
from training.formats import InputError

DEFAULT_BASE = "tinkoff-ai/ruDialoGPT-small"
# The file that makes a folder a checkpoint of train.py, written last; it lists the checkpoint's files.
CHECKPOINT_MARKER = "train_py_checkpoint.json"


class TrainingInterrupted(RuntimeError):
    """Ctrl+C during training; the message says which checkpoint the same command resumes from."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run depends on (train.py's options, under the same names)."""

    data: Path
    out: Path
    task: str = CHAT
    base: str = DEFAULT_BASE
    from_scratch: bool = False
    min_rating: int = 1
    epochs: float = 3.0
    max_steps: int | None = None
    seed: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float | None = None
    warmup_fraction: float = 0.05
    weight_decay: float = 0.01
    max_length: int = 256
    val_fraction: float = 0.1
    # Shape of a --from-scratch model and its tokenizer.
    vocab_size: int = 8000
    n_embd: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 256
    dropout: float = 0.1
    device: str = "auto"
    checkpoint_dir: Path | None = None
    save_every: int = 200
    progress: bool = True

    @property
    def lr(self) -> float:
        """The learning rate: a small one to fine-tune a pretrained model, a larger one from scratch."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.from_scratch else 5e-5

    @property
    def checkpoints(self) -> Path:
        """Where the last checkpoint lives: ``checkpoints/<out's name>`` next to ``out`` unless set."""
        out = Path(self.out).resolve()
        return Path(self.checkpoint_dir).resolve() if self.checkpoint_dir else out.parent / "checkpoints" / out.name


def _check_writable(path: Path, option: str) -> None:
    """Fail unless ``path`` is a folder, or can become one, that this process can write in."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise InputError(f"{option} {path}: {what}, not a folder")
    try:
        # A real write, not os.access: that ignores read-only mounts for root and ACLs for everyone.
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise InputError(f"{option} {path}: cannot write in {existing}: {error.strerror or error}") from None


def _overlap(one: Path, other: Path) -> bool:
    return one == other or one.is_relative_to(other) or other.is_relative_to(one)


def check_paths(settings: TrainSettings) -> None:
    """Fail before any work when the model could not be saved or the checkpoint folder is not the run's to use.

    The checkpoint folder is deleted once the model is saved, so it must be new, empty or a checkpoint
    of train.py, and apart from --out.
    """
    out = Path(settings.out).resolve()
    _check_writable(out, "--out")
    checkpoints = settings.checkpoints
    option = "--checkpoint-dir" if settings.checkpoint_dir else "the checkpoint folder"
    if _overlap(checkpoints, out):
        raise InputError(
            f"{option} {checkpoints} overlaps --out {out}: the checkpoint is deleted after training, "
            f"so name a --checkpoint-dir apart from the model"
        )
    if checkpoints.is_dir() and not (checkpoints / CHECKPOINT_MARKER).is_file():
        others = sorted(entry.name for entry in checkpoints.iterdir())
        if others:
            shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
            raise InputError(
                f"{option} {checkpoints} holds files that are not a checkpoint of train.py ({shown}): "
                f"name a new or empty folder with --checkpoint-dir"
            )
    _check_writable(checkpoints, option)
