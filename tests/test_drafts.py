"""Drafts (STREAMING): a private reply grows as drafts, then comes as one message; the stop button; failures.

The real Dispatcher and Bot with a recording session, a tiny model that never ends its turn, and a worker
held at a chosen token of a reply (never a guessed sleep) where a test needs a generation to be "long".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiogram.exceptions import TelegramNotFound, TelegramRetryAfter
from aiogram.methods import SendChatAction, SendMessageDraft
from conftest import build_answering_model
from harness import Harness, RecordingBackend

import texts
from inference.ctranslate2_backend import CTranslate2Backend
from inference.progress import ReplyProgress
from inference.transformers_backend import TransformersBackend
from store import BOT_AUTHOR

TOAST_TOKENS = 112  # 120 cut to fit the tiny model's 128 positions
CHAT_TOKENS = 100


class HoldAt:
    """Stands in for a reply's progress: after reporting the ``token``-th token, the worker waits for ``until()``.

    The wait is bounded, so a broken bot fails the test's checks instead of hanging it.
    """

    def __init__(self, progress: ReplyProgress, token: int, until: Callable[[], bool]) -> None:
        self.progress = progress
        self._token = token
        self._until = until
        self._seen = 0

    @property
    def stopped(self) -> bool:
        return self.progress.stopped

    def poll(self, text: Callable[[], str]) -> bool:
        stop = self.progress.poll(text)
        self._seen += 1
        if self._seen == self._token:
            give_up = time.monotonic() + 30
            while not self._until() and time.monotonic() < give_up:
                time.sleep(0.005)
        return stop or self.progress.stopped


@pytest.fixture(scope="module")
def endless(endless_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(endless_model_dir), device="cpu", dtype="float32")


def draft_texts(harness: Harness, chat_id: int) -> list[str]:
    return [draft.text for draft in harness.session.drafts(chat_id)]


def assert_growing_prefixes(drafts: list[str], final: str) -> None:
    assert drafts, "the reply showed as drafts"
    for shorter, longer in itertools.pairwise(drafts):
        assert longer.startswith(shorter) and len(longer) > len(shorter), drafts
    assert all(final.startswith(draft) and len(draft) < len(final) for draft in drafts), (drafts, final)


async def test_a_private_toast_grows_as_drafts_then_comes_as_one_message(endless, make_harness) -> None:
    backend = RecordingBackend(endless)
    harness = make_harness(backend, draft_interval_ms=0)
    # The worker waits at the fifth token until the first draft went out, so later words make later drafts.
    backend.progress_wrapper = lambda progress: HoldAt(progress, 5, lambda: bool(harness.session.drafts(1)))
    [toast] = await harness.send(1, "/toast День космонавтики")

    title, text = toast.split("\n\n")
    assert title == texts.TOAST_TITLE.format(topic="День космонавтики")
    drafts = harness.session.drafts(1)
    assert len(drafts) >= 2
    assert_growing_prefixes([draft.text for draft in drafts], text)
    wire = [sent for call, sent in zip(harness.session.calls, harness.session.wire, strict=True) if call in drafts]
    assert all(sent["can_stop"] and sent["keep_on_stop"] and "parse_mode" not in sent for sent in wire), wire
    assert len({d.draft_id for d in drafts}) == 1 and drafts[0].draft_id != 0, "one animated draft"
    assert harness.session.calls.index(drafts[-1]) < harness.session.calls.index(harness.session.sent(1)[-1])
    assert harness.session.sent(1)[-1].reply_markup is not None, "the final message has its buttons"


async def test_stop_sends_the_text_so_far_while_the_batch_s_other_rows_finish(endless, make_harness) -> None:
    backend = RecordingBackend(endless)
    batches = []
    endless.on_batch = batches.append
    harness = make_harness(backend, draft_interval_ms=0, max_new_tokens=CHAT_TOKENS, trigger_word="Бот")
    try:
        holds: list[HoldAt] = []

        def hold_until_stopped(progress: ReplyProgress) -> HoldAt:
            # The first draft (one whole word) goes at the second token; there the worker waits for the stop.
            holds.append(HoldAt(progress, 2, lambda: progress.stopped))
            return holds[-1]

        backend.progress_wrapper = hold_until_stopped
        # A horoscope (of its own sampling) holds the worker while both chat replies queue: they share the next batch.
        backend.gate.clear()
        plug = asyncio.ensure_future(harness.send(-7, "/horoscope лев", chat_type="group"))
        private = asyncio.ensure_future(harness.send(1, "расскажи что-нибудь длинное"))
        group = asyncio.ensure_future(harness.send(-5, "Бот, расскажи тоже", chat_type="group", user_id=50))
        while harness.generator.pending < 3:
            await asyncio.sleep(0.01)
        backend.gate.set()
        while not harness.session.drafts(1):
            await asyncio.sleep(0.01)
        await harness.stop(1, harness.session.drafts(1)[0].draft_id)
        [partial] = await asyncio.wait_for(private, 30)
        [full] = await asyncio.wait_for(group, 30)
        await asyncio.wait_for(plug, 30)
    finally:
        endless.on_batch = None

    pair = next(stats for stats in batches if len(stats.new_tokens) == 2)
    assert pair.new_tokens == (2, CHAT_TOKENS), "the stopped row ended at once, the other ran to its limit"
    assert_growing_prefixes(draft_texts(harness, 1), partial)
    assert len(partial.split()) == 2, "one word per token"
    assert draft_texts(harness, -5) == [], "no drafts in a group"
    last = harness.store.recent_turns(1, 10)[-1]
    assert (last.author, last.text) == (BOT_AUTHOR, partial), "the history keeps what was sent"
    assert harness.store.recent_turns(-5, 10)[-1].text == full


async def test_a_group_sees_typing_and_no_drafts(endless, make_harness) -> None:
    harness = make_harness(endless, draft_interval_ms=0)
    [toast] = await harness.send(-5, "/toast Новый год", chat_type="group")
    assert len(toast.split("\n\n")[1].split()) > TOAST_TOKENS // 2
    assert harness.session.drafts() == []
    assert any(isinstance(call, SendChatAction) and call.chat_id == -5 for call in harness.session.calls)


async def test_a_reply_ready_within_the_first_interval_shows_no_draft(endless, make_harness) -> None:
    # Sixty seconds of DRAFT_INTERVAL_MS against a thirty-second GENERATION_TIMEOUT: no reply can outlast it.
    harness = make_harness(endless, draft_interval_ms=60000, generation_timeout=30)
    [toast] = await harness.send(1, "/toast Новый год")
    assert len(toast.split("\n\n")[1].split()) > TOAST_TOKENS // 2
    assert harness.session.drafts() == []


async def test_streaming_off_shows_no_drafts(endless, make_harness) -> None:
    harness = make_harness(endless, streaming="off", draft_interval_ms=0)
    [reply] = await harness.send(1, "привет")
    assert reply and harness.session.drafts() == []


async def test_a_server_that_refuses_drafts_gets_one_try_then_none(endless, make_harness, caplog) -> None:
    harness = make_harness(endless, draft_interval_ms=0)
    harness.session.fail[SendMessageDraft] = TelegramNotFound(SendMessageDraft(chat_id=1, draft_id=1), "Not Found")
    with caplog.at_level(logging.WARNING, logger="bot.drafts"):
        first = await harness.send(1, "/toast Новый год")
        second = await harness.send(2, "/horoscope лев")
        third = await harness.send(1, "привет")
    assert [len(reply) for reply in (first, second, third)] == [1, 1, 1], "every reply arrived"
    assert len(harness.session.drafts()) == 1
    assert len([r for r in caplog.records if "sendMessageDraft" in r.getMessage()]) == 1, "one log line"


async def test_a_draft_refused_with_429_is_skipped_not_retried(endless, make_harness) -> None:
    backend = RecordingBackend(endless)
    harness = make_harness(backend, draft_interval_ms=0)
    backend.progress_wrapper = lambda progress: HoldAt(progress, 5, lambda: bool(harness.session.drafts(1)))
    flood = TelegramRetryAfter(SendMessageDraft(chat_id=1, draft_id=1), "Too Many Requests: retry after 0", 0)
    harness.session.fail_next[SendMessageDraft] = [flood]
    [toast] = await harness.send(1, "/toast Новый год")
    drafts = draft_texts(harness, 1)
    assert len(drafts) >= 2, "drafts went on after the refused one"
    assert len(set(drafts)) == len(drafts), "the refused draft was not sent again"
    assert_growing_prefixes(drafts, toast.split("\n\n")[1])


async def test_a_stop_before_any_word_gets_the_note(silent_model_dir: Path, make_harness) -> None:
    silent = RecordingBackend(TransformersBackend(str(silent_model_dir), device="cpu", dtype="float32"))
    harness = make_harness(silent, draft_interval_ms=0)

    class PressedAtOnce:
        """A progress whose stop was pressed the moment generation began."""

        stopped = True

        def poll(self, text: Callable[[], str]) -> bool:
            return True

    silent.progress_wrapper = lambda progress: PressedAtOnce()
    assert await harness.send(1, "привет") == [texts.STOPPED_EMPTY]
    title = texts.TOAST_TITLE.format(topic="Новый год")
    assert await harness.send(1, "/toast Новый год") == [f"{title}\n\n{texts.STOPPED_EMPTY}"]
    assert harness.store.recent_turns(1, 10) == []


async def test_ctranslate2_replies_stream_too(endless_model_dir: Path, tmp_path: Path, make_harness) -> None:
    backend = RecordingBackend(CTranslate2Backend(str(endless_model_dir), cache_dir=tmp_path / "ct2", device="cpu"))
    harness = make_harness(backend, draft_interval_ms=0)
    backend.progress_wrapper = lambda progress: HoldAt(progress, 5, lambda: bool(harness.session.drafts(1)))
    [toast] = await harness.send(1, "/toast Новый год")
    assert_growing_prefixes(draft_texts(harness, 1), toast.split("\n\n")[1])


async def test_drafts_follow_the_chats_profanity_rule(tmp_path: Path, make_harness) -> None:
    # A model that writes "сука", "ладно", … until its limit: under mask, no draft may show the word uncovered.
    model_dir = build_answering_model(tmp_path / "model", answers=["сука", "ладно", "море"], endless=True)
    backend = RecordingBackend(TransformersBackend(str(model_dir), device="cpu", dtype="float32"))
    harness = make_harness(backend, draft_interval_ms=0, profanity="mask")
    backend.progress_wrapper = lambda progress: HoldAt(progress, 5, lambda: bool(harness.session.drafts(1)))
    [toast] = await harness.send(1, "/toast Новый год")

    text = toast.split("\n\n")[1]
    drafts = draft_texts(harness, 1)
    assert len(drafts) >= 2 and any("с***" in draft.split() for draft in drafts), drafts
    assert not any("сука" in draft.split() for draft in [text, *drafts]), drafts
    # Prefixes of the masked final message: no draft shows a word the final one covers.
    assert_growing_prefixes(drafts, text)
