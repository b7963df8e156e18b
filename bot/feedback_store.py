"""👍/👎 on the bot's replies, in SQLite: what the model saw, what it said, and one vote per user.

No aiogram here, so export_feedback.py reads it without the Telegram side.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rated_replies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    context TEXT NOT NULL,
    reply TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS rated_replies_by_chat ON rated_replies (chat_id);
CREATE INDEX IF NOT EXISTS rated_replies_by_age ON rated_replies (created_at);
CREATE TABLE IF NOT EXISTS votes (
    reply_id INTEGER NOT NULL REFERENCES rated_replies (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    rating INTEGER NOT NULL,
    voted_at REAL NOT NULL,
    PRIMARY KEY (reply_id, user_id)
);
"""


@dataclass(frozen=True)
class Tally:
    """The votes on one reply."""

    up: int
    down: int


@dataclass(frozen=True)
class RatedReply:
    """A reply with at least one vote: the turns the model saw (oldest first), the reply, the summed rating."""

    context: tuple[str, ...]
    reply: str
    rating: int


@dataclass(frozen=True)
class Share:
    """How many rated replies there are, and how many of them got more 👍 than 👎."""

    rated: int
    liked: int


class FeedbackStore:
    """The ``rated_replies`` and ``votes`` tables."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)

    def add_reply(self, chat_id: int, context: tuple[str, ...], reply: str) -> int:
        """Keep a reply that can be rated; returns its id (the buttons carry it)."""
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO rated_replies (chat_id, context, reply, created_at) VALUES (?, ?, ?, ?)",
                (chat_id, json.dumps(list(context), ensure_ascii=False), reply, time.time()),
            )
        return int(cursor.lastrowid)

    def vote(self, reply_id: int, user_id: int, rating: int) -> Tally | None:
        """Record (or change) a user's vote on a reply; None if the reply is no longer kept."""
        with self._db:
            if self._db.execute("SELECT 1 FROM rated_replies WHERE id = ?", (reply_id,)).fetchone() is None:
                return None
            self._db.execute(
                "INSERT INTO votes (reply_id, user_id, rating, voted_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (reply_id, user_id) DO UPDATE SET rating = excluded.rating, voted_at = excluded.voted_at",
                (reply_id, user_id, rating, time.time()),
            )
        return self.tally(reply_id)

    def tally(self, reply_id: int) -> Tally:
        """The 👍 and 👎 on a reply."""
        up, down = self._db.execute(
            "SELECT COALESCE(SUM(rating > 0), 0), COALESCE(SUM(rating < 0), 0) FROM votes WHERE reply_id = ?",
            (reply_id,),
        ).fetchone()
        return Tally(up, down)

    def rated(self) -> Iterator[RatedReply]:
        """Every reply with at least one vote, oldest first, its votes summed."""
        rows = self._db.execute(
            "SELECT r.context, r.reply, SUM(v.rating) FROM rated_replies r JOIN votes v ON v.reply_id = r.id "
            "GROUP BY r.id ORDER BY r.id"
        )
        for context, reply, rating in rows:
            yield RatedReply(tuple(json.loads(context)), reply, int(rating))

    def share_liked(self, since: float = 0.0) -> Share:
        """Among replies made since ``since`` (seconds since the epoch) with a vote, how many are liked."""
        rated, liked = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(total > 0), 0) FROM ("
            "SELECT SUM(v.rating) AS total FROM rated_replies r JOIN votes v ON v.reply_id = r.id "
            "WHERE r.created_at >= ? GROUP BY r.id)",
            (since,),
        ).fetchone()
        return Share(rated, liked)

    def forget_chat(self, chat_id: int) -> None:
        """Delete the chat's replies and their votes (/forget)."""
        with self._db:
            self._db.execute("DELETE FROM rated_replies WHERE chat_id = ?", (chat_id,))

    def drop_before(self, timestamp: float) -> int:
        """Delete replies older than ``timestamp`` with their votes (HISTORY_TTL_DAYS); returns how many went."""
        with self._db:
            return self._db.execute("DELETE FROM rated_replies WHERE created_at < ?", (timestamp,)).rowcount
