"""Chat history and per-chat settings in SQLite: survive restarts; one writer (the event loop's thread), WAL."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import astuple, dataclass
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
CREATE INDEX IF NOT EXISTS turns_by_age ON turns (created_at);
CREATE TABLE IF NOT EXISTS chat_settings (
    chat_id INTEGER PRIMARY KEY,
    context_turns INTEGER,
    style TEXT,
    reply_chance REAL,
    profanity TEXT
);
"""
# Columns added to a table after its first release: a database made before gets them when it is opened.
_ADDED_COLUMNS = (("chat_settings", "reply_chance", "REAL"), ("chat_settings", "profanity", "TEXT"))


class StoreError(RuntimeError):
    """The database can't be opened or is damaged; the message names the file."""


@dataclass(frozen=True)
class Turn:
    """One message of a dialogue: who said it (a user id as text, or BOT_AUTHOR) and what."""

    author: str
    text: str


@dataclass(frozen=True)
class ChatReply:
    """A generated text ("" when the model had none), with what to remember of it and what the model saw.

    ``turns`` go into the history once the text is delivered; ``context`` is the prompt's turns (oldest
    first), which a rating of the text is kept with; ``stopped``: the user stopped it, the text is what was
    written until then.
    """

    text: str
    turns: tuple[Turn, ...] = ()
    context: tuple[str, ...] = ()
    stopped: bool = False


@dataclass(frozen=True)
class ChatPreferences:
    """A chat's own settings; None means the bot's default."""

    context_turns: int | None = None
    style: str | None = None
    reply_chance: float | None = None
    profanity: str | None = None


def _explain(path: Path, error: Exception) -> str:
    """Why the database at ``path`` can't be used, and what to do (moving it aside only when it is damaged)."""
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    unwritable = next((p for p in (path, folder) if p.exists() and not os.access(p, os.W_OK)), None)
    if isinstance(error, PermissionError) or unwritable is not None:
        return (
            f"the chat database {path} can't be opened: no permission to write to {unwritable or folder} (SQLite "
            "keeps the database and its journal there); give the bot's user write access, or set DB_PATH elsewhere"
        )
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
        return f"the chat database {path} is damaged ({error}); move it aside to start afresh (its history is lost)"
    return f"the chat database {path} can't be opened ({error})"


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
            self._add_missing_columns()
        except (sqlite3.Error, OSError) as error:
            raise StoreError(_explain(self.path, error)) from None

    def _add_missing_columns(self) -> None:
        """Bring a database made by an earlier version up to date (SQLite adds a column in place, rows kept)."""
        for table, column, kind in _ADDED_COLUMNS:
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                with self._db:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    @property
    def connection(self) -> sqlite3.Connection:
        """The database connection, for the bot's other tables (inbox, subscriptions, feedback)."""
        return self._db

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

    def forget_chat(self, chat_id: int) -> None:
        """Delete everything stored about the chat: history and settings."""
        with self._db:
            self._db.execute("DELETE FROM turns WHERE chat_id = ?", (chat_id,))
            self._db.execute("DELETE FROM chat_settings WHERE chat_id = ?", (chat_id,))

    def drop_turns_before(self, timestamp: float) -> int:
        """Delete turns older than ``timestamp`` (seconds since the epoch); returns how many went."""
        with self._db:
            return self._db.execute("DELETE FROM turns WHERE created_at < ?", (timestamp,)).rowcount

    def preferences(self, chat_id: int) -> ChatPreferences:
        """The chat's own settings (defaults where it has none)."""
        row = self._db.execute(
            "SELECT context_turns, style, reply_chance, profanity FROM chat_settings WHERE chat_id = ?", (chat_id,)
        ).fetchone()
        return ChatPreferences(*row) if row else ChatPreferences()

    def set_preferences(self, chat_id: int, preferences: ChatPreferences) -> None:
        """Save the chat's settings."""
        with self._db:
            self._db.execute(
                "INSERT INTO chat_settings (chat_id, context_turns, style, reply_chance, profanity) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (chat_id) DO UPDATE SET context_turns = excluded.context_turns, "
                "style = excluded.style, reply_chance = excluded.reply_chance, profanity = excluded.profanity",
                (chat_id, *astuple(preferences)),
            )

    def chat_count(self) -> int:
        """How many chats have a stored history."""
        return self._db.execute("SELECT COUNT(DISTINCT chat_id) FROM turns").fetchone()[0]

    def close(self) -> None:
        """Close the database file."""
        self._db.close()
