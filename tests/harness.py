"""A real Dispatcher with the bot's router, a tiny real model and a recording session."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from aiogram import Bot
from recording_session import RecordingSession, callback_update, message_update

from bot.notify import AdminNotifier
from generator import ReplyGenerator
from inference.backend import Backend, Outcome, Request
from inference.transformers_backend import TransformersBackend
from main import create_dispatcher
from settings import Settings
from store import ChatStore

ADMIN = 777


class Harness:
    def __init__(
        self, model: Backend, tmp_path: Path, task_models: dict[str, Backend] | None = None, **overrides: object
    ) -> None:
        settings = {"model_path": model.name, "db_path": str(tmp_path / "bot.sqlite3"), "admin_chat_id": (ADMIN,)}
        self.settings = Settings(**{**settings, **overrides})
        self.store = ChatStore(self.settings.db_path)
        self.generator = ReplyGenerator(model, self.store, self.settings, task_models)
        self.session = RecordingSession()
        self.bot = Bot("42:TEST", session=self.session)
        self.admins = AdminNotifier(self.bot, [ADMIN])
        self.dispatcher = create_dispatcher(self.generator, self.store, self.admins, self.settings)

    async def send(self, chat_id: int, text: str | None = None, **extra: object) -> list[str]:
        """Feed a message and return the texts the bot sent to that chat in answer."""
        before = len(self.session.texts(chat_id))
        await self.dispatcher.feed_raw_update(self.bot, message_update(chat_id, text, **extra))
        return self.session.texts(chat_id)[before:]

    async def press(self, chat_id: int, data: str, **extra: object) -> None:
        """Feed a press on an inline button with this callback data."""
        await self.dispatcher.feed_raw_update(self.bot, callback_update(chat_id, data, **extra))

    def close(self) -> None:
        self.generator.shutdown()
        self.store.close()


class RecordingBackend:
    """A real backend that also records every batch it generates, and can be held closed by ``gate``."""

    def __init__(self, backend: TransformersBackend) -> None:
        self.backend = backend
        self.batches: list[list[Request]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    @property
    def requests(self) -> list[Request]:
        return [request for batch in self.batches for request in batch]

    def generate(self, requests: Sequence[Request]) -> list[Outcome]:
        self.gate.wait(10)
        self.batches.append(list(requests))
        return self.backend.generate(requests)
