"""The event loop stays free while the model generates: commands are answered while every reply is being generated.

Generation is held inside the backend's generate(), in the pool's worker, until the test opens the gate, so "while
generating" holds by construction on any machine. How little the loop lags is a speed figure: bench.serving
measures it (max_lag_ms).
"""

from __future__ import annotations

import asyncio

from recording_backend import RecordingBackend
from recording_session import message_update
from waiting import PATIENCE, until

import texts
from inference.transformers_backend import TransformersBackend


async def test_help_is_answered_and_the_loop_stays_free_while_generating(
    tiny_backend: TransformersBackend, make_harness
) -> None:
    # The gate, not a slow model, keeps the replies under way: the model only has to answer once it opens.
    recorder = RecordingBackend(tiny_backend)
    harness = make_harness(recorder, max_batch=2)
    dispatcher, bot, session = harness.dispatcher, harness.bot, harness.session
    chat_ids = range(1, 7)

    recorder.gate.clear()
    try:
        chats = [
            asyncio.ensure_future(dispatcher.feed_raw_update(bot, message_update(chat, "расскажи что-нибудь")))
            for chat in chat_ids
        ]
        await until(lambda: recorder.arrived, "a batch is in the worker's hands")
        await asyncio.wait_for(dispatcher.feed_raw_update(bot, message_update(99, "/help")), PATIENCE)
        assert session.texts(99) == [texts.HELP]
        assert not any(session.texts(chat) for chat in chat_ids), "/help was answered while every reply was held"
    finally:
        recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(*chats), PATIENCE)
    assert all(session.texts(chat) for chat in chat_ids)
