"""The training data files: CSV columns per task and reading them (no torch here, so export_chat.py stays light).

- chat: ``context_3,context_2,context_1,response`` (export_chat.py writes it); a feedback export adds
  ``rating`` (the summed votes: +1, -1, …, or empty).
- toast, horoscope: ``topic,text``, one text per row; the topic is a holiday or a zodiac sign. Each row
  becomes the dialogue ``request_turn(task, topic)`` → text, the prompt the bot sends for that job.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inference.modes import CHAT, request_turn

COLUMNS = ("context_3", "context_2", "context_1", "response")
CONTEXT_COLUMNS = ("context_1", "context_2", "context_3")  # newest first
TEXT_COLUMNS = ("topic", "text")
RATING = "rating"
# The longest turn export_chat.py writes: one Telegram message at most (its limit is 4,096 characters).
MAX_TURN_CHARS = 4096
# The reader takes fields of any size memory allows: csv's default limit (131,072 characters) made it refuse
# whole files over one long cell. 2**31 - 1 is the largest limit every platform's C long holds.
_FIELD_LIMIT = 2**31 - 1


class InputError(ValueError):
    """Bad input (data file, base model, checkpoint): the message names the file and the row or field."""


@dataclass(frozen=True)
class Dialogue:
    """One window of a chat: the context turns (oldest first, the last one is the user's) and the reply."""

    context: tuple[str, ...]
    response: str


@dataclass(frozen=True)
class Rows:
    """What a data file gave: its dialogues, rows lacking a needed cell, and rows rated below the cut."""

    dialogues: list[Dialogue]
    incomplete: int
    low_rated: int


def required_columns(task: str) -> tuple[str, ...]:
    """The columns a data file for ``task`` must have (any order; others are ignored)."""
    return COLUMNS if task == CHAT else TEXT_COLUMNS


def needed_cells(task: str) -> str:
    """The cells a row of ``task`` must fill to count, as said in messages."""
    return "context_1 and response" if task == CHAT else "topic and text"


@contextmanager
def _large_fields() -> Iterator[None]:
    previous = csv.field_size_limit(_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _rating(value: str | None, where: str) -> int | None:
    """A row's rating: None when the column or the cell is empty."""
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise InputError(f"{where}: rating {value.strip()!r} is not a whole number (+1, -1 or empty)") from None


def _dialogue(row: dict[str, str], task: str) -> Dialogue | None:
    """The row's dialogue, or None when a needed cell is empty.

    Chat context is taken from context_1 backwards up to the first empty cell: a gap means a turn is
    missing, and skipping it would break the alternation of speakers.
    """
    if task != CHAT:
        topic, text = row["topic"].strip(), row["text"].strip()
        return Dialogue((request_turn(task, topic),), text) if topic and text else None
    response = row["response"].strip()
    context = []
    for column in CONTEXT_COLUMNS:
        if not row[column].strip():
            break
        context.append(row[column].strip())
    return Dialogue(tuple(reversed(context)), response) if context and response else None


def read_rows(path: Path, task: str = CHAT, min_rating: int = 1) -> Rows:
    """Dialogues of a data file for ``task`` (columns in any order), skipping rows rated below ``min_rating``.

    A row without a rating (no column, or an empty cell) always counts: only votes exclude a row.
    """
    path = Path(path)
    columns = required_columns(task)
    dialogues: list[Dialogue] = []
    incomplete = low_rated = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as file, _large_fields():
            reader = csv.DictReader(file)
            header = [name.strip() for name in reader.fieldnames or []]
            if not header:
                raise InputError(f"{path}: empty file: expected a header {','.join(columns)}")
            missing = [column for column in columns if column not in header]
            if missing:
                raise InputError(
                    f"{path}: no column {', '.join(missing)} in the header {','.join(header)!r}: "
                    f"expected {','.join(columns)} (any order) for --task {task}"
                )
            reader.fieldnames = header
            for number, row in enumerate(reader, start=1):
                where = f"{path}: row {number} (line {reader.line_num})"
                if None in row or None in row.values():
                    fields = len(header) + len(row.get(None, ())) - sum(value is None for value in row.values())
                    raise InputError(f"{where} has {fields} fields, the header has {len(header)}")
                rating = _rating(row.get(RATING), where)
                dialogue = _dialogue(row, task)
                if dialogue is None:
                    incomplete += 1
                elif rating is not None and rating < min_rating:
                    low_rated += 1
                else:
                    dialogues.append(dialogue)
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    except csv.Error as error:
        raise InputError(f"{path}: not a valid CSV: {error}") from None
    if low_rated and not dialogues:
        raise InputError(
            f"{path}: no row to train on: {low_rated} rated below --min-rating {min_rating}, "
            f"{incomplete} without both {needed_cells(task)}"
        )
    if not dialogues:
        raise InputError(f"{path}: no row has both {needed_cells(task)} ({incomplete} rows skipped)")
    return Rows(dialogues, incomplete, low_rated)
