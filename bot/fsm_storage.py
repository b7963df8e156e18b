"""aiogram's FSM state in the bot's SQLite database, so a question the bot asked outlives a restart.

A user half-way through "Другой праздник…" is still asked for the holiday's name after a redeploy. The
rows live next to the history (one writer: the event loop's thread), one per state key; a key with no
state and no data has no row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey

# Absent parts of a key are stored as 0 and '' rather than NULL: NULLs never match in a primary key.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fsm_state (
    bot_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    user_id INTEGER NOT NULL,
    thread_id INTEGER NOT NULL,
    business_connection_id TEXT NOT NULL,
    destiny TEXT NOT NULL,
    state TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (bot_id, chat_id, user_id, thread_id, business_connection_id, destiny)
);
"""
_KEY = "bot_id = ? AND chat_id = ? AND user_id = ? AND thread_id = ? AND business_connection_id = ? AND destiny = ?"


def _key(key: StorageKey) -> tuple[int, int, int, int, str, str]:
    return (
        key.bot_id,
        key.chat_id,
        key.user_id,
        key.thread_id or 0,
        key.business_connection_id or "",
        key.destiny,
    )


class SQLiteStorage(BaseStorage):
    """FSM states and data in the ``fsm_state`` table; data must be JSON (strings, numbers, lists, dicts)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        """Set the key's state (None: no state)."""
        name = state.state if isinstance(state, State) else state
        self._write(key, name, self._read(key)[1])

    async def get_state(self, key: StorageKey) -> str | None:
        """The key's state, None if it has none."""
        return self._read(key)[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        """Replace the key's data."""
        if not isinstance(data, dict):
            raise DataNotDictLikeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")
        self._write(key, self._read(key)[0], data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        """A copy of the key's data ({} if none)."""
        return self._read(key)[1]

    async def close(self) -> None:
        """Nothing to close: the connection belongs to the bot's ChatStore."""

    def forget_chat(self, chat_id: int) -> None:
        """Delete every state and data of a chat, for every user and bot (used by /forget)."""
        with self._db:
            self._db.execute("DELETE FROM fsm_state WHERE chat_id = ?", (chat_id,))

    def _read(self, key: StorageKey) -> tuple[str | None, dict[str, Any]]:
        row = self._db.execute(f"SELECT state, data FROM fsm_state WHERE {_KEY}", _key(key)).fetchone()
        return (row[0], json.loads(row[1])) if row else (None, {})

    def _write(self, key: StorageKey, state: str | None, data: Mapping[str, Any]) -> None:
        with self._db:
            if state is None and not data:
                self._db.execute(f"DELETE FROM fsm_state WHERE {_KEY}", _key(key))
                return
            self._db.execute(
                "INSERT INTO fsm_state (bot_id, chat_id, user_id, thread_id, business_connection_id, destiny, state, "
                "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (bot_id, chat_id, user_id, thread_id, business_connection_id, destiny) "
                "DO UPDATE SET state = excluded.state, data = excluded.data",
                (*_key(key), state, json.dumps(data, ensure_ascii=False)),
            )
