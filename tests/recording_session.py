"""An aiogram session that records Bot API calls instead of sending them (fast handler tests)."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import GetMe, SendMessage, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, Message, User

BOT_USER = User(id=42, is_bot=True, first_name="Test", username="test_bot")


class RecordingSession(BaseSession):
    """Answers every call like Telegram would and keeps the calls; ``fail`` makes a method raise."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[TelegramMethod[Any]] = []
        self.fail: dict[type, Exception] = {}
        self._message_id = 1000

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        self.calls.append(method)
        if type(method) in self.fail:
            raise self.fail[type(method)]
        if isinstance(method, GetMe):
            return BOT_USER  # type: ignore[return-value]
        if isinstance(method, SendMessage):
            self._message_id += 1
            return Message(  # type: ignore[return-value]
                message_id=self._message_id,
                date=int(time.time()),
                chat=Chat(id=int(method.chat_id), type="private"),
                from_user=BOT_USER,
                text=method.text,
            )
        return True  # type: ignore[return-value]

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        yield b""

    async def close(self) -> None:
        pass

    def sent(self, chat_id: int | None = None) -> list[SendMessage]:
        """sendMessage calls, optionally to one chat."""
        return [c for c in self.calls if isinstance(c, SendMessage) and chat_id in (None, c.chat_id)]

    def texts(self, chat_id: int | None = None) -> list[str]:
        """Texts sent, optionally to one chat."""
        return [c.text for c in self.sent(chat_id)]


_update_ids = itertools.count(1)


def message_update(chat_id: int, text: str | None = None, *, user_id: int | None = None, **extra: Any) -> dict:
    """A raw message update as Telegram sends it; a leading /command gets its entity."""
    update_id = next(_update_ids)
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private", "first_name": "Аня"},
        "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "Аня"},
        **extra,
    }
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return {"update_id": update_id, "message": message}
