"""Every backend streams: its drafts are the final reply's whole words as they come, and a stop ends one row.

transformers and CTranslate2 on a tiny random model (its replies are odd tokens, split multi-byte characters
included), the remote backend against the fake OpenAI server's streamed completions.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import torch
from fake_openai import FakeOpenAI
from waiting import PATIENCE, until

from inference.backend import BatchStats, Request
from inference.ctranslate2_backend import CTranslate2Backend
from inference.modes import TOAST, request_turn
from inference.openai_backend import OpenAIBackend
from inference.progress import ReplyProgress
from inference.sampling import MODEL_CARD, TASK_DEFAULTS, Sampling, with_values
from inference.transformers_backend import TransformersBackend

PROMPTS = [("привет",), ("как дела?", "нормально, а у тебя?", "всё хорошо, спасибо"), ("что делаешь?",)]
LONG = with_values(MODEL_CARD, {"max_new_tokens": 60})
# CTranslate2's random generators are per thread and seeded once, at their first use, so a run can't be repeated
# under sampling; greedy decoding repeats it.
GREEDY_LONG = with_values(LONG, {"top_k": 1, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0})


def word_prefixes(text: str) -> list[str]:
    """Every prefix of ``text`` that ends before one of its spaces: what drafts at every word show."""
    return [text[:index] for index, char in enumerate(text) if char == " "]


@pytest.fixture(scope="module")
def ct2(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> CTranslate2Backend:
    return CTranslate2Backend(str(tiny_model_dir), cache_dir=tmp_path_factory.mktemp("ct2"), device="cpu")


@pytest.fixture(params=["transformers", "ctranslate2"])
def local(request: pytest.FixtureRequest, tiny_backend: TransformersBackend, ct2: CTranslate2Backend):
    return tiny_backend if request.param == "transformers" else ct2


def sampling_of(local) -> Sampling:
    """Seeded sampling for transformers, greedy decoding for CTranslate2 (see GREEDY_LONG)."""
    return GREEDY_LONG if isinstance(local, CTranslate2Backend) else LONG


async def test_a_local_backend_streams_each_rows_words_and_the_same_replies(local) -> None:
    sampling = sampling_of(local)
    torch.manual_seed(7)
    plain = await asyncio.to_thread(local.generate, [Request(p, time.monotonic() + 60, sampling) for p in PROMPTS])
    shown: list[list[str]] = [[] for _ in PROMPTS]
    progresses = [ReplyProgress(drafts.append, 0.0) for drafts in shown]
    torch.manual_seed(7)
    streamed = await asyncio.to_thread(
        local.generate,
        [Request(p, time.monotonic() + 60, sampling, "", g) for p, g in zip(PROMPTS, progresses, strict=True)],
    )
    await asyncio.sleep(0)
    assert streamed == plain, "streaming changes nothing of what is generated"
    assert sum(len(outcome.text.split()) > 3 for outcome in streamed) >= 2, "replies long enough to stream"
    for outcome, drafts in zip(streamed, shown, strict=True):
        assert not outcome.stopped
        # The drafts joined with what only the final message adds are the final text: every word boundary
        # was shown in order, each draft a prefix of the final reply.
        assert drafts == word_prefixes(outcome.text), (drafts, outcome.text)


async def test_a_stop_ends_its_row_at_once_and_the_others_run_on(local) -> None:
    calls: list[BatchStats] = []
    local.on_batch = calls.append
    shown: list[str] = []
    stopping = ReplyProgress(shown.append, 0.0)
    polls = 0
    poll = stopping.poll

    def stop_at_the_fifth_token(text):
        nonlocal polls
        polls += 1
        if polls == 5:
            stopping.stop()
        return poll(text)

    stopping.poll = stop_at_the_fifth_token
    sampling = sampling_of(local)
    torch.manual_seed(3)
    requests = [Request(p, time.monotonic() + 60, sampling) for p in PROMPTS]
    requests[1] = Request(PROMPTS[1], time.monotonic() + 60, sampling, "", stopping)
    try:
        outcomes = await asyncio.to_thread(local.generate, requests)
    finally:
        local.on_batch = None
    assert [outcome.stopped for outcome in outcomes] == [False, True, False]
    assert not any(outcome.timed_out for outcome in outcomes)
    [stats] = calls
    assert stats.new_tokens[1] == 5, "the row ended at the token where its stop was seen"
    assert min(stats.new_tokens[0], stats.new_tokens[2]) > 5, "the other rows ran on"
    assert all(outcome.text.startswith(draft) for outcome in outcomes[1:2] for draft in shown)


@pytest.fixture
async def server():
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def remote(server: FakeOpenAI, tiny_model_dir: Path):
    backend = await asyncio.to_thread(OpenAIBackend, server.url, tokenizer_path=str(tiny_model_dir))
    try:
        yield backend
    finally:
        await backend.aclose()


TOAST_TEXT = " За тех, кто в море,\u200b и за\nтех, кто ждёт их на берегу! @@ПЕРВЫЙ@@ лишнее"


async def test_the_remote_backend_streams_the_server_s_pieces(server: FakeOpenAI, remote: OpenAIBackend) -> None:
    server.reply = lambda body: TOAST_TEXT
    calls: list[BatchStats] = []
    remote.on_batch = calls.append
    shown: list[str] = []
    sampling = TASK_DEFAULTS[TOAST]
    turns = (request_turn(TOAST, "день моряка"),)
    request = Request(turns, time.monotonic() + 10, sampling, "", ReplyProgress(shown.append, 0.0))
    outcome = await remote.agenerate(request)
    await asyncio.sleep(0)
    assert outcome.text == "За тех, кто в море, и за тех, кто ждёт их на берегу!"
    # The forged turn after the toast never shows; the space before it made the toast's last word whole.
    assert shown == [*word_prefixes(outcome.text), outcome.text]
    [body] = server.requests
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert [call.new_tokens for call in calls] == [(3,)], "the token count of the stream's last piece"


async def test_a_stop_closes_the_remote_stream(server: FakeOpenAI, remote: OpenAIBackend) -> None:
    server.reply = lambda body: TOAST_TEXT
    server.hold_after = 6
    shown: list[str] = []
    progress = ReplyProgress(shown.append, 0.0)
    request = Request(("привет",), time.monotonic() + 30, MODEL_CARD, "", progress)
    reply = asyncio.ensure_future(remote.agenerate(request))
    await until(lambda: shown, "the first piece is shown")
    progress.stop()
    outcome = await asyncio.wait_for(reply, PATIENCE)
    assert outcome.stopped and not outcome.timed_out
    assert outcome.text.startswith(shown[-1]) and len(outcome.text) < 20
    await until(lambda: server.closed_early, "the server saw the stream closed before its end")
    assert server.closed_early == 1


async def test_a_stop_pressed_under_a_remote_reply_s_draft(
    server: FakeOpenAI, remote: OpenAIBackend, make_harness
) -> None:
    server.reply = lambda body: " ну что тут скажешь, давай поговорим о море"
    server.hold_after = 6  # the server writes on only once released, which this test never does
    harness = make_harness(remote, draft_interval_ms=0, generation_timeout=30)
    reply = asyncio.ensure_future(harness.send(1, "привет"))
    await until(lambda: harness.session.drafts(1), "a draft is shown")
    await harness.stop(1, harness.session.drafts(1)[0].draft_id)
    [partial] = await asyncio.wait_for(reply, PATIENCE)
    drafts = [draft.text for draft in harness.session.drafts(1)]
    assert all(partial.startswith(text) and partial != text for text in drafts), (drafts, partial)
    assert "море" not in partial, "the reply ended where the stop came"
    assert harness.store.recent_turns(1, 10)[-1].text == partial
    await until(lambda: server.closed_early, "the server saw the stream closed")
    assert server.closed_early == 1
