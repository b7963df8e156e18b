"""A local fake Telegram Bot API server for tests: long polling, replies, drafts, recorded calls, injected faults.

A real aiogram ``Bot`` talks to it through ``AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))``.
Run ``python tests/fake_telegram.py --port 8081`` to try it by hand (stdin lines ``chat_id text`` inject messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

BOT_USER = {"id": 42, "is_bot": True, "first_name": "Test", "username": "test_bot"}
# Form fields that are plain strings even when they look like JSON ("123", "true"); the rest are JSON-decoded.
RAW_FIELDS = frozenset(
    {
        *("text", "caption", "parse_mode", "callback_query_id", "inline_message_id", "data", "url", "action"),
        *("title", "description", "short_description", "query", "emoji", "name", "language_code"),
        *("business_connection_id", "message_effect_id", "sticker", "photo", "document"),
    }
)
Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class Call:
    """One request the bot made: the API method, its decoded params and whether a fault was injected."""

    method: str
    params: dict[str, Any]
    failed: bool = False
    status: int = 200
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Fault:
    status: int
    retry_after: int | None = None
    description: str | None = None


def _decode(key: str, value: Any) -> Any:
    if not isinstance(value, str) or key in RAW_FIELDS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _error(status: int, description: str, **parameters: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=status)


class FakeTelegram:
    """An aiohttp server on 127.0.0.1 speaking enough of the Bot API for aiogram polling and replies."""

    def __init__(self, token: str = "123456:TEST-token", host: str = "127.0.0.1", port: int = 0) -> None:
        self.token, self.host, self.port = token, host, port
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self.delivered: dict[int, dict[str, Any]] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.on_call: Callable[[Call], None] | None = None
        # Methods this server answers 404 "Not Found", as a Bot API server older than them does.
        self.unknown_methods: set[str] = set()
        # The update kinds the last getUpdates asked for (Telegram delivers only those).
        self.allowed_updates: list[str] | None = None
        # getUpdates calls waiting for an update right now (long polls).
        self.long_polls = 0
        # What ``down(seconds)`` measures its outage by; a test may put its own clock here.
        self.clock: Callable[[], float] = time.monotonic
        self._chat_types: dict[int, str] = {}
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._callback_ids = itertools.count(1)
        self._faults: dict[str, list[_Fault]] = {}
        self._rates: dict[str, tuple[float, tuple[int, ...], random.Random]] = {}
        self._down_until = 0.0
        self._closing = False
        self._wakeup = asyncio.Event()
        # How many times updates were queued again: a poll begun before that confirms nothing (see redeliver).
        self._redeliveries = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``TelegramAPIServer.from_base`` or ``TELEGRAM_API_BASE``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> Self:
        """Bind (a free port unless one was given) and serve."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._closing = False
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Wake pending long polls and shut the server down."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def add_update(self, update: dict[str, Any]) -> int:
        """Queue an update (without ``update_id``) for getUpdates; returns its update_id."""
        update = {"update_id": next(self._update_ids), **update}
        self.updates.append(update)
        self.delivered[update["update_id"]] = update
        self._notify()
        return update["update_id"]

    def redeliver(self, update_ids: list[int]) -> None:
        """Queue updates again with their ids, as Telegram does for those whose confirmation it never got.

        A poll still waiting from before (a stopped bot's, whose connection the server has not seen close yet)
        returns nothing: its offset is the confirmation that never got through, so it can't drop them again.
        """
        self._redeliveries += 1
        self.updates = sorted([*self.updates, *(self.delivered[i] for i in update_ids)], key=lambda u: u["update_id"])
        self._notify()

    def next_message_id(self, chat_id: int) -> int:
        """The next message_id in a chat (user and bot messages share the sequence, as in Telegram)."""
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    @staticmethod
    def user(user_id: int) -> dict[str, Any]:
        """A realistic Telegram User for a human."""
        return {"id": user_id, "is_bot": False, "first_name": "User", "username": f"user{user_id}"}

    @staticmethod
    def chat(chat_id: int, chat_type: str | None = None) -> dict[str, Any]:
        """A Chat: private for positive ids unless told otherwise, else a group with a title."""
        chat_type = chat_type or ("private" if chat_id > 0 else "supergroup")
        if chat_type == "private":
            return {"id": chat_id, "type": "private", "first_name": "User", "username": f"user{chat_id}"}
        return {"id": chat_id, "type": chat_type, "title": "Test group"}

    def message(
        self, chat_id: int, message_id: int, sender: dict[str, Any], chat_type: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A stored message, or a new minimal Message object with these fields."""
        stored = self.messages.get((chat_id, message_id))
        fresh = {"message_id": message_id, "date": int(time.time()), "chat": self.chat(chat_id, chat_type)}
        return stored or {**fresh, "from": sender, **fields}

    def _user_message(
        self, chat_id: int, user_id: int | None, chat_type: str, reply_to: int | None, fields: dict[str, Any]
    ) -> int:
        self._chat_types[chat_id] = chat_type
        message_id = self.next_message_id(chat_id)
        message = self.message(
            chat_id, message_id, self.user(self._sender(chat_id, chat_type, user_id)), chat_type, **fields
        )
        if reply_to is not None:
            message["reply_to_message"] = self.message(chat_id, reply_to, BOT_USER, chat_type)
        self.messages[chat_id, message_id] = message
        self.add_update({"message": message})
        return message_id

    @staticmethod
    def _sender(chat_id: int, chat_type: str, user_id: int | None) -> int:
        return user_id if user_id is not None else (chat_id if chat_type == "private" else 1000)

    def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str = "private",
        reply_to_message_id: int | None = None,
        **extra: Any,
    ) -> int:
        """A user writes ``text`` (a leading ``/command`` gets a bot_command entity); returns the message_id."""
        if text.startswith("/"):
            extra.setdefault("entities", [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}])
        return self._user_message(chat_id, user_id, chat_type, reply_to_message_id, {"text": text, **extra})

    def send_sticker(
        self, chat_id: int, *, emoji: str = "😀", user_id: int | None = None, chat_type: str = "private", **extra: Any
    ) -> int:
        """A user sends a sticker; returns the message_id."""
        sticker = {"file_id": "STICKER", "file_unique_id": "stk", "type": "regular", "width": 512, "height": 512}
        sticker |= {"is_animated": False, "is_video": False, "emoji": emoji}
        return self._user_message(chat_id, user_id, chat_type, None, {"sticker": sticker, **extra})

    def send_photo(
        self,
        chat_id: int,
        *,
        caption: str | None = None,
        user_id: int | None = None,
        chat_type: str = "private",
        **extra: Any,
    ) -> int:
        """A user sends a photo (optionally with a caption); returns the message_id."""
        photo = [{"file_id": f"PHOTO{s}", "file_unique_id": f"ph{s}", "width": s, "height": s} for s in (90, 800)]
        if caption is not None:
            extra["caption"] = caption
        return self._user_message(chat_id, user_id, chat_type, None, {"photo": photo, **extra})

    def send_callback(self, chat_id: int, data: str, message_id: int, user_id: int | None = None) -> str:
        """A user presses an inline button under ``message_id``; returns the callback_query id."""
        query_id = str(next(self._callback_ids))
        sender = self.user(self._sender(chat_id, "private" if chat_id > 0 else "group", user_id))
        message = self.message(chat_id, message_id, BOT_USER)
        query = {"id": query_id, "from": sender, "message": message, "chat_instance": str(chat_id), "data": data}
        self.add_update({"callback_query": query})
        return query_id

    def edit_text(
        self, chat_id: int, message_id: int, text: str, *, user_id: int | None = None, chat_type: str = "private"
    ) -> None:
        """A user edits their earlier message: an edited_message update."""
        sender = self.user(self._sender(chat_id, chat_type, user_id))
        message = {**self.message(chat_id, message_id, sender, chat_type), "text": text, "edit_date": int(time.time())}
        self.messages[chat_id, message_id] = message
        self.add_update({"edited_message": message})

    def stop_generation(self, chat_id: int, draft_id: int) -> int:
        """A user presses the stop button under the bot's draft: a stopped_message_generation update."""
        chat = self.chat(chat_id, self._chat_types.get(chat_id))
        return self.add_update({"stopped_message_generation": {"chat": chat, "draft_id": draft_id}})

    def drafts(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Params of the accepted sendMessageDraft calls, optionally to one chat, oldest first."""
        calls = self._matching("sendMessageDraft", None, 0, include_failed=False)
        return [c.params for c in calls if chat_id is None or str(c.params.get("chat_id")) == str(chat_id)]

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's messages in a chat as stored now (after edits), oldest first, with their message_id."""
        found = [m for (chat, _), m in self.messages.items() if chat == chat_id and m.get("from") == BOT_USER]
        return sorted(found, key=lambda message: message["message_id"])

    def press(self, chat_id: int, text: str, user_id: int | None = None) -> str:
        """A user presses the button labelled ``text`` under the bot's latest message that has it."""
        for message in reversed(self.bot_messages(chat_id)):
            rows = message.get("reply_markup", {}).get("inline_keyboard", [])
            for button in (button for row in rows for button in row):
                if button["text"] == text:
                    return self.send_callback(chat_id, button["callback_data"], message["message_id"], user_id)
        raise AssertionError(f"no button {text!r} in chat {chat_id}")

    def sent_messages(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Params of the successful sendMessage calls, optionally to one chat."""
        calls = self._matching("sendMessage", None, 0, include_failed=False)
        return [c.params for c in calls if chat_id is None or str(c.params.get("chat_id")) == str(chat_id)]

    def _matching(self, method: str, predicate: Predicate | None, since: int, include_failed: bool) -> list[Call]:
        ok = [c for c in self.calls[since:] if c.method.lower() == method.lower() and (include_failed or not c.failed)]
        return [c for c in ok if predicate is None or predicate(c.params)]

    async def wait_for_count(
        self,
        method: str,
        n: int,
        predicate: Predicate | None = None,
        timeout: float = 60.0,
        *,
        since: int = 0,
        include_failed: bool = False,
    ) -> list[dict[str, Any]]:
        """Params of the first ``n`` matching calls at index >= ``since``; AssertionError after ``timeout``."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found := self._matching(method, predicate, since, include_failed)) < n:
            wakeup, left = self._wakeup, deadline - asyncio.get_running_loop().time()
            if left <= 0:
                seen = [(c.method, c.params, "failed" if c.failed else "ok") for c in self.calls[since:]][-15:]
                raise AssertionError(
                    f"waited {timeout}s for {n} matching {method} call(s), got {len(found)}; last calls: {seen}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), left)
        return [c.params for c in found[:n]]

    async def wait_for(
        self,
        method: str,
        predicate: Predicate | None = None,
        timeout: float = 60.0,
        *,
        since: int = 0,
        include_failed: bool = False,
    ) -> dict[str, Any]:
        """Params of the first matching (by default successful) call at index >= ``since``."""
        return (await self.wait_for_count(method, 1, predicate, timeout, since=since, include_failed=include_failed))[0]

    def fail_next(
        self,
        method: str,
        status: int,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail: 429/403/5xx replies, or 0 to drop the connection."""
        self._faults.setdefault(method.lower(), []).extend(
            _Fault(status, retry_after, description) for _ in range(times)
        )

    def fault_rate(
        self, method: str, rate: float, statuses: tuple[int, ...] = (429, 500, 502, 0), seed: int | None = None
    ) -> None:
        """Fail each call of ``method`` with probability ``rate`` (0 turns it off), with a random status."""
        self._rates[method.lower()] = (rate, statuses, random.Random(seed))

    def down(self, seconds: float) -> None:
        """Answer every request with 502 for the next ``seconds``."""
        self._down_until = self.clock() + seconds

    def set_down(self, down: bool) -> None:
        """Answer every request with 502 until ``set_down(False)``."""
        self._down_until = float("inf") if down else 0.0

    def _next_fault(self, method: str) -> _Fault | None:
        if queued := self._faults.get(method):
            return queued.pop(0)
        if method in self._rates:
            rate, statuses, rng = self._rates[method]
            if rng.random() < rate:
                status = rng.choice(statuses)
                return _Fault(status, retry_after=1 if status == 429 else None)
        return None

    @staticmethod
    def _fault_response(request: web.Request, fault: _Fault) -> web.StreamResponse:
        if fault.status == 0:
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if fault.status == 429:
            retry_after = fault.retry_after if fault.retry_after is not None else 1
            return _error(
                429, fault.description or f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
            )
        if fault.status == 403:
            return _error(403, fault.description or "Forbidden: bot was blocked by the user")
        default = {400: "Bad Request: message text is empty", 502: "Bad Gateway"}.get(fault.status, "Internal Error")
        return _error(fault.status, fault.description or default)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _decode(k, v) for k, v in request.query.items()}
        if request.content_type == "application/json":
            params.update(await request.json() if request.can_read_body else {})
        elif request.can_read_body:
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    params[key] = {"filename": value.filename, "content": value.file.read()}
                else:
                    params[key] = _decode(key, value)
        return params

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        call = Call(method, await self._read_params(request))
        if self.clock() < self._down_until:
            call.failed, call.status = True, 502
            response: web.StreamResponse = _error(502, "Bad Gateway")
        elif method.lower() in {name.lower() for name in self.unknown_methods}:
            call.failed, call.status = True, 404
            response = _error(404, "Not Found")
        elif fault := self._next_fault(method.lower()):
            call.failed, call.status = True, fault.status or 0
            response = self._fault_response(request, fault)
        else:
            try:
                response = web.json_response({"ok": True, "result": await self._result(method.lower(), call.params)})
            except (KeyError, ValueError, TypeError) as error:
                call.failed, call.status = True, 400
                response = _error(400, f"Bad Request: bad or missing parameter ({error!r})")
        self.calls.append(call)
        self._notify()
        if self.on_call is not None:
            self.on_call(call)
        return response

    def _bot_message(self, params: dict[str, Any]) -> dict[str, Any]:
        """A new bot message from send* params, or the stored one updated from edit* params."""
        chat_id = int(params["chat_id"])
        message_id = int(params.get("message_id") or self.next_message_id(chat_id))
        message = self.messages.setdefault((chat_id, message_id), self.message(chat_id, message_id, BOT_USER))
        message.update({key: str(params[key]) for key in ("text", "caption") if key in params})
        markup = params.get("reply_markup")
        message.pop("reply_markup", None)
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        return message

    async def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getme":
            extra = {"can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
            return BOT_USER | extra
        if method == "getupdates":
            return await self._get_updates(params)
        if method == "getwebhookinfo":
            return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self.updates)}
        if method in ("sendmessage", "sendphoto", "senddocument", "sendsticker", "sendvoice", "sendanimation"):
            return self._bot_message(params)
        if method == "sendmessagedraft":
            self._check_draft(params)
            return True
        if method in ("editmessagetext", "editmessagereplymarkup", "editmessagecaption"):
            if "inline_message_id" in params:
                return True
            return self._bot_message(params) | {"edit_date": int(time.time())}
        scope = json.dumps([params.get("scope"), params.get("language_code")])
        if method == "setmycommands":
            self.commands[scope] = params.get("commands", [])
        elif method == "deletemycommands":
            self.commands.pop(scope, None)
        elif method == "getmycommands":
            return self.commands.get(scope, [])
        return True

    def _check_draft(self, params: dict[str, Any]) -> None:
        """Refuse a draft as Telegram does (400): private chats only, a non-zero id, 4096 characters at most."""
        chat_id = int(params["chat_id"])
        if self._chat_types.get(chat_id, "private" if chat_id > 0 else "group") != "private":
            raise ValueError("drafts can be sent to private chats only")
        if int(params["draft_id"]) == 0:
            raise ValueError("draft_id must be non-zero")
        if len(str(params.get("text", ""))) > 4096:
            raise ValueError("text is too long")

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 100)) or 100
        if "allowed_updates" in params:
            self.allowed_updates = params["allowed_updates"]
        deadline = time.monotonic() + float(params.get("timeout", 0))
        redeliveries = self._redeliveries
        while True:
            if redeliveries != self._redeliveries:
                return []
            if offset > 0:
                self.updates = [u for u in self.updates if u["update_id"] >= offset]
            pending = self.updates[offset:] if offset < 0 else self.updates
            left, wakeup = deadline - time.monotonic(), self._wakeup
            if pending or left <= 0 or self._closing:
                return pending[:limit]
            self.long_polls += 1
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), left)
            finally:
                self.long_polls -= 1


async def _serve(port: int, token: str) -> None:
    async with FakeTelegram(token=token, port=port) as server:
        print(f"base url: {server.base_url}  token: {server.token}")
        print("type `chat_id text` lines to inject messages")
        server.on_call = lambda c: print(f"<- {c.method} {c.params}") if c.method != "getUpdates" else None
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            chat, _, text = line.strip().partition(" ")
            if chat.lstrip("-").isdigit() and text:
                print(f"-> message {server.send_text(int(chat), text)} in {chat}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default="123456:TEST-token")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.token))
