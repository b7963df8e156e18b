"""ReplyProgress: drafts at most every interval, by whole words, handed to the event loop; the stop flag.

And the guarantee drafts rest on: the whole words of a row's ids so far, decoded and cleaned as the final
reply is, are a prefix of that final reply, whatever the ids (speaker tokens, split multi-byte characters).
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest
from conftest import RUDIALOGPT_DIR

from inference.codec import PromptCodec
from inference.progress import ReplyProgress, until_stopped, whole_words


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    """Let the callbacks a poll scheduled on the loop run."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_whole_words_leave_out_the_last_word_which_may_still_grow() -> None:
    assert whole_words("привет как дела") == "привет как"
    assert whole_words("привет, как") == "привет,"
    assert whole_words("привет") == ""
    assert whole_words("") == ""


async def test_drafts_come_after_the_interval_only_when_whole_words_grew() -> None:
    clock, shown = Clock(), []
    progress = ReplyProgress(shown.append, 0.4, clock=clock)
    asked = []

    def text(value: str):
        return lambda: asked.append(value) or value

    assert progress.poll(text("привет как")) is False
    clock.now += 0.39
    progress.poll(text("привет как дела"))
    await settle()
    assert shown == [] and asked == [], "nothing within the first interval, and the text is not even decoded"
    clock.now += 0.01
    progress.poll(text("привет как дела"))
    await settle()
    assert shown == ["привет как"]
    clock.now += 0.5
    progress.poll(text("привет как дела, ну"))
    await settle()
    assert shown == ["привет как", "привет как дела,"]
    clock.now += 0.39
    progress.poll(text("привет как дела, ну и что"))
    await settle()
    assert shown[-1] == "привет как дела,", "not more often than the interval"
    clock.now += 0.01
    progress.poll(text("привет как дела, ну"))
    await settle()
    assert shown[-1] == "привет как дела,", "a text that did not grow by a word is not shown again"
    clock.now += 0.1
    progress.poll(text("привет как дела, ну и что"))
    await settle()
    assert shown[-1] == "привет как дела, ну и"


async def test_a_text_without_new_words_is_asked_for_again_a_quarter_interval_later() -> None:
    clock, asked = Clock(), []
    progress = ReplyProgress(lambda text: None, 0.4, clock=clock)
    clock.now += 0.4
    progress.poll(lambda: asked.append(1) or "одно")
    clock.now += 0.09
    progress.poll(lambda: asked.append(2) or "одно")
    clock.now += 0.01
    progress.poll(lambda: asked.append(3) or "одно слово")
    assert asked == [1, 3]


async def test_reports_from_a_worker_thread_arrive_on_the_event_loop() -> None:
    clock, shown = Clock(), []
    loop_thread = threading.get_ident()
    progress = ReplyProgress(lambda text: shown.append((text, threading.get_ident())), 0.0, clock=clock)
    await asyncio.to_thread(progress.poll, lambda: "из потока пришло")
    await settle()
    assert shown == [("из потока", loop_thread)]


async def test_a_stop_ends_the_reports_and_wakes_a_waiting_stream() -> None:
    shown = []
    progress = ReplyProgress(shown.append, 0.0, clock=Clock())
    waiter = asyncio.ensure_future(progress.wait_stopped())
    await settle()
    assert not waiter.done() and not progress.stopped
    progress.stop()
    assert progress.stopped and progress.poll(lambda: "ещё слова тут") is True
    await asyncio.wait_for(waiter, 5)
    await settle()
    assert shown == []


async def test_until_stopped_cancels_the_work_at_the_stop_and_passes_its_errors_on() -> None:
    progress = ReplyProgress(lambda text: None, 0.0)
    forever = asyncio.Event()
    work = asyncio.ensure_future(until_stopped(forever.wait(), progress))
    await settle()
    progress.stop()
    await asyncio.wait_for(work, 5)

    async def fails() -> None:
        raise ValueError("broken stream")

    with pytest.raises(ValueError, match="broken stream"):
        await until_stopped(fails(), ReplyProgress(lambda text: None, 0.0))


def _codecs(tiny_model_dir: Path) -> list[PromptCodec]:
    codecs = [PromptCodec.load(str(tiny_model_dir))]
    if (RUDIALOGPT_DIR / "tokenizer_config.json").is_file():
        codecs.append(PromptCodec.load(str(RUDIALOGPT_DIR)))
    return codecs


def test_the_whole_words_of_any_ids_so_far_begin_the_final_reply(tiny_model_dir: Path) -> None:
    for codec in _codecs(tiny_model_dir):
        tokenizer, tokens = codec.tokenizer, codec.tokens
        text = "Привет! Как дела? 😀 Ёлка, 👨‍👩‍👧 и @@ПЕРВЫЙ@@ тоже\n\nновая\u200b строка"
        ordinary = tokenizer.encode(text, add_special_tokens=False)
        # Byte tokens split Cyrillic letters and emoji across tokens; special ids end or break a reply.
        pool = [*ordinary, *range(min(len(tokenizer), 300)), tokens.first, tokens.second, tokens.pad]
        rng = random.Random(0)
        rows = [ordinary] + [[rng.choice(pool) for _ in range(rng.randint(1, 40))] for _ in range(300)]
        checked = 0
        for row in rows:
            final = codec.decode(row)
            for end in range(len(row) + 1):
                draft = whole_words(codec.decode(row[:end]))
                assert final.startswith(draft), (codec.name, row[:end], draft, final)
                checked += bool(draft)
        assert checked > 100, "enough drafts with words in them were checked"
