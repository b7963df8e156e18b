"""An aiogram session that records Bot API calls instead of sending them (fast handler tests)."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncGenerator
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import EditMessageText, GetChatMember, GetMe, SendMessage, SendMessageDraft, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import Chat, ChatMemberMember, ChatMemberOwner, Message, User

BOT_USER = User(id=42, is_bot=True, first_name="Test", username="test_bot")
# A sticker as the Bot API sends it, for the messages that carry no text.
STICKER = {
    "file_id": "s",
    "file_unique_id": "s",
    "type": "regular",
    "width": 1,
    "height": 1,
    "is_animated": False,
    "is_video": False,
}


class RecordingSession(BaseSession):
    """Answers every call like Telegram would and keeps the calls.

    ``fail`` makes a method raise every time, ``fail_next`` the next time only; ``wire`` holds each
    call's parameters as they would go to Telegram (the Bot's defaults filled in, unset ones left out).
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[TelegramMethod[Any]] = []
        self.wire: list[dict[str, Any]] = []
        self.fail: dict[type, Exception] = {}
        self.fail_next: dict[type, list[Exception]] = {}
        self.group_admins: set[int] = set()
        self._message_id = 1000

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        self.calls.append(method)
        prepared = {key: self.prepare_value(value, bot, {}) for key, value in method.model_dump(warnings=False).items()}
        self.wire.append({key: value for key, value in prepared.items() if value is not None})
        if self.fail_next.get(type(method)):
            raise self.fail_next[type(method)].pop(0)
        if type(method) in self.fail:
            raise self.fail[type(method)]
        if isinstance(method, GetMe):
            return BOT_USER  # type: ignore[return-value]
        if isinstance(method, GetChatMember):
            user = User(id=method.user_id, is_bot=False, first_name="Участник")
            if method.user_id in self.group_admins:
                return ChatMemberOwner(user=user, is_anonymous=False)  # type: ignore[return-value]
            return ChatMemberMember(user=user)  # type: ignore[return-value]
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

    def drafts(self, chat_id: int | None = None) -> list[SendMessageDraft]:
        """sendMessageDraft calls (failed ones too), optionally to one chat."""
        return [c for c in self.calls if isinstance(c, SendMessageDraft) and chat_id in (None, c.chat_id)]

    def edits(self) -> list[EditMessageText]:
        """editMessageText calls."""
        return [c for c in self.calls if isinstance(c, EditMessageText)]

    def texts(self, chat_id: int | None = None) -> list[str]:
        """Texts sent, optionally to one chat."""
        return [c.text for c in self.sent(chat_id)]


_update_ids = itertools.count(1)


def message_update(
    chat_id: int, text: str | None = None, *, user_id: int | None = None, chat_type: str = "private", **extra: Any
) -> dict:
    """A raw message update as Telegram sends it; a leading /command and @mentions get their entities.

    ``user_id=0`` leaves the sender out, as in a channel's posts.
    """
    update_id = next(_update_ids)
    chat = (
        {"id": chat_id, "type": chat_type, "first_name": "Аня"}
        if chat_type == "private"
        else {"id": chat_id, "type": chat_type, "title": "Группа"}
    )
    message: dict[str, Any] = {
        "message_id": update_id,
        "date": int(time.time()),
        "chat": chat,
        "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "Аня"},
        **extra,
    }
    if user_id == 0:
        del message["from"]
    if text is not None:
        message["text"] = text
        entities = []
        if text.startswith("/"):
            entities.append({"type": "bot_command", "offset": 0, "length": len(text.split()[0])})
        for word in text.split():
            if word.startswith("@") and len(word) > 1:
                offset = len(text[: text.index(word)].encode("utf-16-le")) // 2
                entities.append({"type": "mention", "offset": offset, "length": len(word.encode("utf-16-le")) // 2})
        if entities:
            message["entities"] = entities
    return {"update_id": update_id, "message": message}


def callback_update(chat_id: int, data: str, *, user_id: int | None = None, chat_type: str = "private") -> dict:
    """A raw callback_query update for a button under one of the bot's messages."""
    update_id = next(_update_ids)
    chat = {"id": chat_id, "type": chat_type, "title": "Группа"}
    return {
        "update_id": update_id,
        "callback_query": {
            "id": str(update_id),
            "chat_instance": "ci",
            "from": {"id": user_id or chat_id, "is_bot": False, "first_name": "Аня"},
            "data": data,
            "message": {
                "message_id": 1,
                "date": int(time.time()),
                "chat": chat,
                "from": {"id": 42, "is_bot": True, "first_name": "Test", "username": "test_bot"},
                "text": "Настройки чата",
            },
        },
    }


def stop_update(chat_id: int, draft_id: int) -> dict:
    """A raw stopped_message_generation update: the user pressed the stop button under the bot's draft."""
    chat = {"id": chat_id, "type": "private", "first_name": "Аня"}
    return {"update_id": next(_update_ids), "stopped_message_generation": {"chat": chat, "draft_id": draft_id}}
