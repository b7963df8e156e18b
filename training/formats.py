"""The training data files: CSV columns and reading dialogue windows (no torch here, so export_chat.py stays light)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("context_3", "context_2", "context_1", "response")
CONTEXT_COLUMNS = ("context_1", "context_2", "context_3")  # newest first


class InputError(ValueError):
    """Bad input (data file, base model, checkpoint): the message names the file and the row or field."""


@dataclass(frozen=True)
class Dialogue:
    """One window of a chat: the context turns (oldest first, the last one is the user's) and the reply."""

    context: tuple[str, ...]
    response: str


def read_dialogues(path: Path) -> tuple[list[Dialogue], int]:
    """Dialogues of a CSV with the COLUMNS in any order, and how many rows lacked context_1 or response.

    Context is taken from context_1 backwards up to the first empty cell: a gap means a turn is
    missing, and skipping it would break the alternation of speakers.
    """
    path = Path(path)
    dialogues: list[Dialogue] = []
    skipped = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.DictReader(file)
            header = [name.strip() for name in reader.fieldnames or []]
            if not header:
                raise InputError(f"{path}: empty file: expected a header {','.join(COLUMNS)}")
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                raise InputError(
                    f"{path}: no column {', '.join(missing)} in the header {','.join(header)!r}: "
                    f"expected {','.join(COLUMNS)} (any order)"
                )
            reader.fieldnames = header
            for number, row in enumerate(reader, start=1):
                if None in row or None in row.values():
                    fields = len(header) + len(row.get(None, ())) - sum(value is None for value in row.values())
                    raise InputError(
                        f"{path}: row {number} (line {reader.line_num}) has {fields} fields, the header has "
                        f"{len(header)}"
                    )
                response = row["response"].strip()
                context = []
                for column in CONTEXT_COLUMNS:
                    if not row[column].strip():
                        break
                    context.append(row[column].strip())
                if not context or not response:
                    skipped += 1
                    continue
                dialogues.append(Dialogue(tuple(reversed(context)), response))
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    except csv.Error as error:
        raise InputError(f"{path}: not a valid CSV: {error}") from None
    if not dialogues:
        raise InputError(f"{path}: no row has both context_1 and response ({skipped} rows skipped)")
    return dialogues, skipped
