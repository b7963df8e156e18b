"""A real Dispatcher with the bot's router, a tiny real model and a recording session."""

from __future__ import annotations

import random
from pathlib import Path

from recording_backend import RecordingBackend  # noqa: F401 - the tests import it from here too
from recording_session import RecordingSession, callback_update, message_update, stop_update

from app import create_bot, create_dispatcher
from bot.notify import AdminNotifier
from generator import ReplyGenerator
from inference.backend import Backend
from settings import Settings
from store import ChatStore

ADMIN = 777


class Harness:
    """The bot as main.py wires it (app.create_bot, app.create_dispatcher), with a RecordingSession for Telegram.

    ``model`` is the chat backend given (a RecordingBackend shows what the generator asked of it); ``dice``
    decides which unaddressed group messages get an answer (REPLY_CHANCE).
    """

    def __init__(
        self,
        backend: Backend,
        tmp_path: Path,
        task_models: dict[str, Backend] | None = None,
        dice: random.Random | None = None,
        **overrides: object,
    ) -> None:
        settings = {
            "bot_token": "42:TEST",
            "model_path": backend.name,
            "db_path": str(tmp_path / "bot.sqlite3"),
            "admin_chat_id": (ADMIN,),
        }
        self.settings = Settings(**{**settings, **overrides})
        self.model = backend
        self.store = ChatStore(self.settings.db_path)
        self.generator = ReplyGenerator(self.model, self.store, self.settings, task_models)
        self.session = RecordingSession()
        self.bot = create_bot(self.settings, self.session)
        self.admins = AdminNotifier(self.bot, [ADMIN])
        self.dispatcher = create_dispatcher(self.generator, self.store, self.admins, self.settings, dice)

    async def send(self, chat_id: int, text: str | None = None, **extra: object) -> list[str]:
        """Feed a message and return the texts the bot sent to that chat in answer."""
        before = len(self.session.texts(chat_id))
        await self.dispatcher.feed_raw_update(self.bot, message_update(chat_id, text, **extra))
        return self.session.texts(chat_id)[before:]

    async def press(self, chat_id: int, data: str, **extra: object) -> None:
        """Feed a press on an inline button with this callback data."""
        await self.dispatcher.feed_raw_update(self.bot, callback_update(chat_id, data, **extra))

    async def stop(self, chat_id: int, draft_id: int) -> None:
        """Feed a press on the stop button under the bot's draft ``draft_id``."""
        await self.dispatcher.feed_raw_update(self.bot, stop_update(chat_id, draft_id))

    def close(self) -> None:
        self.generator.shutdown()
        self.store.close()
