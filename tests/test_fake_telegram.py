"""The fake Bot API server against a real aiogram Bot and Dispatcher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.methods import GetUpdates
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageGenerationStopped,
)
from fake_telegram import FakeTelegram
from waiting import PATIENCE, until


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


def make_bot(server: FakeTelegram, token: str | None = None) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))
    return Bot(token or server.token, session=session)


@pytest.fixture
async def bot(server: FakeTelegram) -> AsyncIterator[Bot]:
    bot = make_bot(server)
    yield bot
    await bot.session.close()


def echo_router() -> Router:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="again", callback_data="again")]])
        await message.answer("hello!", reply_markup=keyboard)

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    @router.message(F.sticker)
    async def sticker(message: Message) -> None:
        await message.answer(f"sticker {message.sticker.emoji}")

    @router.message(F.photo)
    async def photo(message: Message) -> None:
        await message.answer(f"photo {message.caption}")

    @router.edited_message(F.text)
    async def edited(message: Message) -> None:
        await message.answer(f"edited: {message.text}")

    @router.callback_query(F.data == "again")
    async def again(query: CallbackQuery) -> None:
        await query.answer("ok")
        await query.message.edit_text(f"pressed on {query.message.message_id}")

    return router


@pytest.fixture
async def polling(server: FakeTelegram, bot: Bot) -> AsyncIterator[Dispatcher]:
    dp = Dispatcher()
    dp.include_router(echo_router())
    task = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
    yield dp
    await dp.stop_polling()
    await asyncio.wait_for(task, PATIENCE)


async def test_get_me(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username, me.first_name) == (42, True, "test_bot", "Test")


async def test_echo_and_start_through_polling(server: FakeTelegram, polling: Dispatcher) -> None:
    server.send_text(100, "привет 123")
    sent = await server.wait_for("sendMessage", lambda p: p["chat_id"] == 100)
    assert sent["text"] == "echo: привет 123"

    server.send_text(100, "123")  # digits-only text stays a string
    assert (await server.wait_for("sendMessage", lambda p: p["text"] == "echo: 123"))["chat_id"] == 100

    server.send_text(100, "/start")
    sent = await server.wait_for("sendMessage", lambda p: p["text"] == "hello!")
    assert sent["reply_markup"] == {"inline_keyboard": [[{"text": "again", "callback_data": "again"}]]}
    assert [p["text"] for p in server.sent_messages(100)] == ["echo: привет 123", "echo: 123", "hello!"]
    assert server.sent_messages(999) == []


async def test_other_update_kinds(server: FakeTelegram, polling: Dispatcher) -> None:
    server.send_sticker(7, emoji="🐱")
    await server.wait_for("sendMessage", lambda p: p["text"] == "sticker 🐱")
    server.send_photo(7, caption="cat")
    await server.wait_for("sendMessage", lambda p: p["text"] == "photo cat")
    first = server.send_text(-500, "in a group", user_id=9, chat_type="group")
    await server.wait_for("sendMessage", lambda p: p["chat_id"] == -500)
    server.edit_text(-500, first, "edited text", user_id=9, chat_type="group")
    await server.wait_for("sendMessage", lambda p: p["text"] == "edited: edited text")

    server.send_text(7, "/start")
    await server.wait_for("sendMessage", lambda p: p["text"] == "hello!")
    bot_message_id = server.messages[max(k for k in server.messages if k[0] == 7)]["message_id"]
    query_id = server.send_callback(7, "again", bot_message_id)
    assert (await server.wait_for("answerCallbackQuery"))["callback_query_id"] == query_id
    edit = await server.wait_for("editMessageText")
    assert (edit["chat_id"], edit["message_id"], edit["text"]) == (7, bot_message_id, f"pressed on {bot_message_id}")


async def test_message_ids_and_commands(server: FakeTelegram, bot: Bot) -> None:
    first = await bot.send_message(5, "one")
    second = await bot.send_message(5, "two")
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.chat.id == 5 and first.from_user.id == 42 and first.text == "one"
    assert server.send_text(5, "from user") == 3
    await bot.send_chat_action(5, "typing")
    await bot.set_my_commands([BotCommand(command="start", description="начать")])
    assert [c.command for c in await bot.get_my_commands()] == ["start"]
    await bot.delete_my_commands()
    assert await bot.get_my_commands() == []
    assert await bot.delete_webhook() is True
    assert await bot.edit_message_text("three", chat_id=5, message_id=2) is not None
    assert [c.method for c in server.calls][:2] == ["sendMessage", "sendMessage"]


async def test_retry_after_once(server: FakeTelegram, bot: Bot) -> None:
    server.fail_next("sendMessage", 429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as error:
        await bot.send_message(1, "hi")
    assert error.value.retry_after == 7
    await bot.send_message(1, "again")
    assert [p["text"] for p in server.sent_messages(1)] == ["again"]
    assert [c.failed for c in server.calls] == [True, False]


async def test_other_statuses(server: FakeTelegram, bot: Bot) -> None:
    server.fail_next("sendMessage", 403)
    server.fail_next("sendMessage", 502, times=2)
    with pytest.raises(TelegramForbiddenError, match="blocked"):
        await bot.send_message(1, "hi")
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.send_message(1, "hi")
    await bot.send_message(1, "hi")
    assert len(server.sent_messages()) == 1


async def test_dropped_connection(server: FakeTelegram, bot: Bot) -> None:
    server.fail_next("sendMessage", 0)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(1, "hi")
    assert server.calls[-1].failed
    await bot.send_message(1, "after")
    assert [p["text"] for p in server.sent_messages()] == ["after"]


async def test_fault_rate_is_seeded(server: FakeTelegram, bot: Bot) -> None:
    server.fault_rate("sendMessage", 0.5, statuses=(429, 500), seed=1)
    outcomes = []
    for i in range(20):
        try:
            await bot.send_message(1, str(i))
            outcomes.append("ok")
        except (TelegramRetryAfter, TelegramServerError) as error:
            outcomes.append(type(error).__name__)
    assert 0 < outcomes.count("ok") < 20
    assert len(server.sent_messages()) == outcomes.count("ok")
    server.fault_rate("sendMessage", 0)
    await bot.send_message(1, "clean")


async def test_down(server: FakeTelegram, bot: Bot) -> None:
    server.set_down(True)
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    server.set_down(False)
    await bot.get_me()
    # The outage is measured by a clock the test moves, so no request can come after it by chance.
    now = [100.0]
    server.clock = lambda: now[0]
    server.down(0.3)
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    now[0] += 0.29
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    now[0] += 0.02
    await bot.get_me()


async def test_polling_survives_down(server: FakeTelegram, polling: Dispatcher) -> None:
    await server.wait_for("getUpdates")  # aiogram's start_polling dies if its first getMe fails
    server.down(1.0)
    server.send_text(3, "still there?")
    assert (await server.wait_for("sendMessage"))["text"] == "echo: still there?"


async def test_wrong_token(server: FakeTelegram) -> None:
    bot = make_bot(server, token="999:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await bot.get_me()
    finally:
        await bot.session.close()
    assert server.calls == []


async def test_long_poll_returns_when_update_arrives(server: FakeTelegram, bot: Bot) -> None:
    # Lower bounds: the poll waited. Upper ones, far below the poll's 40 s: it returned when the update came.
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, server.send_text, 1, "late")
    started = time.monotonic()
    updates = await bot(GetUpdates(timeout=40))
    assert 0.25 < time.monotonic() - started < 20
    assert [u.message.text for u in updates] == ["late"]
    # not confirmed yet: returned again at once; confirmed by a higher offset
    assert len(await bot(GetUpdates(timeout=40))) == 1
    started = time.monotonic()
    # With nothing to deliver, the poll ends at its own timeout (not, say, at the client's 60 s).
    assert await bot(GetUpdates(offset=updates[0].update_id + 1, timeout=1)) == []
    assert 0.9 < time.monotonic() - started < 20
    assert server.updates == []


async def test_a_poll_from_before_a_redelivery_does_not_confirm_what_is_delivered_again(
    server: FakeTelegram, bot: Bot
) -> None:
    """A stopped bot's last poll, still waiting at the server, must not drop what Telegram delivers again."""
    first = server.send_text(1, "раз")
    [update] = await bot(GetUpdates(timeout=0))
    stale = asyncio.ensure_future(bot(GetUpdates(offset=update.update_id + 1, timeout=40)))
    await until(lambda: server.long_polls == 1, "the poll confirming the update waits at the server")
    server.redeliver([first])
    assert await asyncio.wait_for(stale, PATIENCE) == []
    assert [u.update_id for u in await bot(GetUpdates(timeout=0))] == [first]


async def test_wait_for_timeout_message(server: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(1, "something else")
    with pytest.raises(AssertionError, match=r"sendMessage.*something else"):
        await server.wait_for("sendMessage", lambda p: p["text"] == "never", timeout=0.2)
    assert await server.wait_for("sendMessage", since=0) == server.sent_messages()[0]
    with pytest.raises(AssertionError):
        await server.wait_for("sendMessage", since=len(server.calls), timeout=0.1)


async def test_stop_with_pending_long_poll(server: FakeTelegram, bot: Bot) -> None:
    task = asyncio.create_task(bot(GetUpdates(timeout=30)))

    async def polling() -> None:
        while server.long_polls == 0:
            assert not task.done(), task
            await asyncio.sleep(0.01)

    # Stopped only once the poll waits on the server (stopped sooner, the server would drop the connection).
    await asyncio.wait_for(polling(), 30)
    started = time.monotonic()
    await server.stop()
    # Woken, not waited out: the poll had 30 s left.
    assert await asyncio.wait_for(task, 15) == []
    assert time.monotonic() - started < 15


async def test_multipart_json_and_bad_params(server: FakeTelegram, bot: Bot) -> None:
    photo = await bot.send_photo(3, BufferedInputFile(b"\x89PNG", filename="a.png"), caption="123")
    assert photo.caption == "123" and photo.chat.id == 3
    params = server.calls[-1].params
    attach = params["photo"].removeprefix("attach://")
    assert params[attach] == {"filename": "a.png", "content": b"\x89PNG"}
    async with aiohttp.ClientSession() as http:
        url = f"{server.base_url}/bot{server.token}/sendMessage"
        async with http.post(url, json={"chat_id": 3, "text": "json body", "disable_notification": True}) as resp:
            assert (await resp.json())["result"]["text"] == "json body"
        async with http.post(url, data={"text": "no chat"}) as resp:
            assert resp.status == 400 and (await resp.json())["ok"] is False
    assert server.sent_messages(3)[0]["disable_notification"] is True
    assert [c.failed for c in server.calls] == [False, False, True]


async def test_reply_to_and_wait_for_count(server: FakeTelegram, bot: Bot) -> None:
    sent = await bot.send_message(8, "question")
    server.send_text(8, "answer", reply_to_message_id=sent.message_id)
    updates = await bot(GetUpdates(timeout=0))
    assert updates[0].message.reply_to_message.text == "question"
    assert updates[0].message.reply_to_message.from_user.is_bot

    async def send_later(i: int) -> None:
        await asyncio.sleep(0.05 * i)
        await bot.send_message(8, f"n{i}")

    senders = [asyncio.create_task(send_later(i)) for i in range(3)]
    found = await server.wait_for_count("sendMessage", 3, lambda p: p["text"].startswith("n"))
    await asyncio.gather(*senders)
    assert sorted(p["text"] for p in found) == ["n0", "n1", "n2"]


async def test_drafts_are_recorded_and_refused_as_telegram_refuses_them(server: FakeTelegram, bot: Bot) -> None:
    assert await bot.send_message_draft(chat_id=5, draft_id=7, text="привет, как", can_stop=True)
    assert server.drafts(5) == [{"chat_id": 5, "draft_id": 7, "text": "привет, как", "can_stop": True}]
    with pytest.raises(TelegramBadRequest, match="non-zero"):
        await bot.send_message_draft(chat_id=5, draft_id=0, text="привет")
    with pytest.raises(TelegramBadRequest, match="private chats only"):
        await bot.send_message_draft(chat_id=-500, draft_id=1, text="привет")
    server.send_text(600, "hi", user_id=9, chat_type="group")
    with pytest.raises(TelegramBadRequest, match="private chats only"):
        await bot.send_message_draft(chat_id=600, draft_id=1, text="привет")
    with pytest.raises(TelegramBadRequest, match="too long"):
        await bot.send_message_draft(chat_id=5, draft_id=7, text="а" * 4097)
    server.unknown_methods.add("sendMessageDraft")
    with pytest.raises(TelegramNotFound):
        await bot.send_message_draft(chat_id=5, draft_id=7, text="привет")
    assert len(server.drafts(5)) == 1, "only the accepted draft is listed"


async def test_a_stop_under_a_draft_reaches_the_bot(server: FakeTelegram, bot: Bot) -> None:
    stopped: list[tuple[int, int]] = []
    router = Router()

    @router.stopped_message_generation()
    async def on_stop(event: MessageGenerationStopped) -> None:
        stopped.append((event.chat.id, event.draft_id))

    dp = Dispatcher()
    dp.include_router(router)
    task = asyncio.create_task(dp.start_polling(bot, polling_timeout=1, handle_signals=False))
    try:
        server.stop_generation(5, 77)
        await until(lambda: stopped, "the bot got the stop")
        assert stopped == [(5, 77)]
        assert server.allowed_updates == ["stopped_message_generation"], "aiogram asked for the kinds it handles"
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(task, PATIENCE)
