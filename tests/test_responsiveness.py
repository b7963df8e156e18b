"""The event loop stays free while the model generates: commands are answered, the loop barely lags."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from recording_session import message_update

import texts
from bench.workload import LagMeter
from inference.transformers_backend import TransformersBackend


async def test_help_is_answered_and_the_loop_stays_free_while_generating(slow_model_dir: Path, make_harness) -> None:
    backend = TransformersBackend(str(slow_model_dir), device="cpu", dtype="float32")
    harness = make_harness(backend, max_new_tokens=150, max_batch=2)
    generator, dispatcher, bot, session = harness.generator, harness.dispatcher, harness.bot, harness.session

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
