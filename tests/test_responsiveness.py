"""The event loop stays free while the model generates: commands are answered, the loop barely lags."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from recording_session import RecordingSession, message_update

import texts
from app import create_dispatcher
from bench.serving import LagMeter
from bot.notify import AdminNotifier
from generator import ReplyGenerator
from inference.transformers_backend import TransformersBackend
from settings import Settings
from store import ChatStore


async def test_help_is_answered_and_the_loop_stays_free_while_generating(slow_model_dir: Path, tmp_path) -> None:
    from aiogram import Bot

    settings = Settings(
        model_path=str(slow_model_dir),
        device="cpu",
        dtype="float32",
        max_new_tokens=150,
        max_batch=2,
        db_path=str(tmp_path / "bot.sqlite3"),
    )
    store = ChatStore(settings.db_path)
    generator = ReplyGenerator(TransformersBackend(settings.model_path, device="cpu", dtype="float32"), store, settings)
    session = RecordingSession()
    bot = Bot("42:TEST", session=session)
    dispatcher = create_dispatcher(generator, store, AdminNotifier(bot, []), settings)

    with LagMeter(period=0.005) as lag:
        chats = [
            asyncio.ensure_future(dispatcher.feed_raw_update(bot, message_update(chat, "расскажи что-нибудь")))
            for chat in range(1, 7)
        ]
        await asyncio.sleep(0.3)
        assert generator.pending >= 1, "generations must still be running when /help arrives"
        started = time.perf_counter()
        await dispatcher.feed_raw_update(bot, message_update(99, "/help"))
        help_seconds = time.perf_counter() - started
        still_generating = generator.pending
        await asyncio.gather(*chats)

    assert session.texts(99) == [texts.HELP]
    assert still_generating >= 1
    assert help_seconds < 0.5, f"/help took {help_seconds:.3f} s while generating"
    assert lag.worst < 0.1, f"the event loop lagged {lag.worst * 1000:.0f} ms"
    assert all(session.texts(chat) for chat in range(1, 7))
    generator.shutdown()
    store.close()
