"""Daily horoscope subscriptions in SQLite: one per chat, with the date of its last delivery.

The horoscope of a sign is generated once a day and kept here too, so every subscriber of that sign
reads the same one that day and a restart regenerates nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    chat_id INTEGER PRIMARY KEY,
    sign TEXT NOT NULL,
    minute INTEGER NOT NULL,
    last_sent TEXT
);
CREATE INDEX IF NOT EXISTS subscriptions_by_minute ON subscriptions (minute);
CREATE TABLE IF NOT EXISTS daily_horoscopes (
    day TEXT NOT NULL,
    sign TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (day, sign)
);
"""


@dataclass(frozen=True)
class Subscription:
    """A chat's daily horoscope: the sign, the local time, and the last day it was sent (None: never)."""

    chat_id: int
    sign: str
    at: time
    last_sent: date | None = None


def _minute(at: time) -> int:
    return at.hour * 60 + at.minute


def _row(chat_id: int, sign: str, minute: int, last_sent: str | None) -> Subscription:
    return Subscription(
        chat_id, sign, time(minute // 60, minute % 60), date.fromisoformat(last_sent) if last_sent else None
    )


class Subscriptions:
    """The ``subscriptions`` and ``daily_horoscopes`` tables."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._db.executescript(_SCHEMA)

    def subscribe(self, chat_id: int, sign: str, at: time, today: date, now: time) -> Subscription:
        """Subscribe the chat (replacing its subscription); a time already past today starts tomorrow."""
        last_sent = today if now >= at else None
        with self._db:
            self._db.execute(
                "INSERT INTO subscriptions (chat_id, sign, minute, last_sent) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (chat_id) DO UPDATE SET sign = excluded.sign, minute = excluded.minute, "
                "last_sent = excluded.last_sent",
                (chat_id, sign, _minute(at), last_sent.isoformat() if last_sent else None),
            )
        return Subscription(chat_id, sign, at, last_sent)

    def get(self, chat_id: int) -> Subscription | None:
        """The chat's subscription, if any."""
        row = self._db.execute(
            "SELECT chat_id, sign, minute, last_sent FROM subscriptions WHERE chat_id = ?", (chat_id,)
        ).fetchone()
        return _row(*row) if row else None

    def cancel(self, chat_id: int) -> bool:
        """Remove the chat's subscription; False if it had none."""
        with self._db:
            return self._db.execute("DELETE FROM subscriptions WHERE chat_id = ?", (chat_id,)).rowcount > 0

    def move(self, old_chat_id: int, new_chat_id: int) -> None:
        """Follow a group that became a supergroup (and so got a new id)."""
        with self._db:
            self._db.execute(
                "UPDATE OR REPLACE subscriptions SET chat_id = ? WHERE chat_id = ?", (new_chat_id, old_chat_id)
            )

    def chats_of(self, sign: str) -> list[int]:
        """The chats subscribed to this sign's horoscope."""
        return [row[0] for row in self._db.execute("SELECT chat_id FROM subscriptions WHERE sign = ?", (sign,))]

    def due(self, today: date, now: time) -> list[Subscription]:
        """Subscriptions whose time today has come and that were not sent today, earliest time first.

        One whose minute passed while the bot was down is due until the day ends, and only that day.
        """
        rows = self._db.execute(
            "SELECT chat_id, sign, minute, last_sent FROM subscriptions "
            "WHERE minute <= ? AND (last_sent IS NULL OR last_sent < ?) ORDER BY minute, chat_id",
            (_minute(now), today.isoformat()),
        ).fetchall()
        return [_row(*row) for row in rows]

    def mark_sent(self, chat_id: int, today: date) -> None:
        """Record today's delivery to the chat."""
        with self._db:
            self._db.execute("UPDATE subscriptions SET last_sent = ? WHERE chat_id = ?", (today.isoformat(), chat_id))

    def count(self) -> int:
        """How many chats are subscribed."""
        return self._db.execute("SELECT COUNT(*) FROM subscriptions").fetchone()[0]

    def horoscope(self, today: date, sign: str) -> str | None:
        """The sign's horoscope generated for today, if it was."""
        row = self._db.execute(
            "SELECT text FROM daily_horoscopes WHERE day = ? AND sign = ?", (today.isoformat(), sign)
        ).fetchone()
        return row[0] if row else None

    def keep_horoscope(self, today: date, sign: str, text: str) -> None:
        """Keep the sign's horoscope for today; older days' go."""
        with self._db:
            self._db.execute("DELETE FROM daily_horoscopes WHERE day < ?", (today.isoformat(),))
            self._db.execute(
                "INSERT OR REPLACE INTO daily_horoscopes (day, sign, text) VALUES (?, ?, ?)",
                (today.isoformat(), sign, text),
            )
