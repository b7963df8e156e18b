"""Chat history in SQLite: survives restarts, one writer (the event loop's thread), WAL journal."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

BOT_AUTHOR = "bot"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_chat ON turns (chat_id, id);
"""


class StoreError(RuntimeError):
    """The database can't be opened or is damaged; the message names the file."""


@dataclass(frozen=True)
class Turn:
    """One message of a dialogue: who said it (a user id as text, or BOT_AUTHOR) and what."""

    author: str
    text: str


class ChatStore:
    """Per-chat dialogue history in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path))
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            verdict = self._db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as error:
            raise StoreError(
                f"the chat database {self.path} can't be used ({error}); move it aside to start afresh"
            ) from None

    def recent_turns(self, chat_id: int, limit: int) -> list[Turn]:
        """The chat's last ``limit`` turns, oldest first."""
        rows = self._db.execute(
            "SELECT author, text FROM turns WHERE chat_id = ? ORDER BY id DESC LIMIT ?", (chat_id, limit)
        ).fetchall()
        return [Turn(author, text) for author, text in reversed(rows)]

    def add_turns(self, chat_id: int, turns: list[Turn]) -> None:
        """Append turns to the chat's history in one transaction."""
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT INTO turns (chat_id, author, text, created_at) VALUES (?, ?, ?, ?)",
                [(chat_id, turn.author, turn.text, now) for turn in turns],
            )

    def clear(self, chat_id: int) -> None:
        """Forget the chat's history."""
        with self._db:
            self._db.execute("DELETE FROM turns WHERE chat_id = ?", (chat_id,))

    def close(self) -> None:
        """Close the database file."""
        self._db.close()
