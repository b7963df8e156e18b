"""The generator on a real (tiny) model loaded with from_pretrained: replies, history, batching, stops."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from recording_backend import RecordingBackend
from safetensors import safe_open
from transformers import GenerationConfig
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from errors import EmptyMessageError, ReplyTimeoutError
from generator import ReplyGenerator
from inference.backend import ModelLoadError, Request
from inference.ctranslate2_backend import CTranslate2Backend
from inference.sampling import MODEL_CARD
from inference.transformers_backend import TopKSampler, TransformersBackend, fast_sampling
from inference.tuning import tuning_for
from settings import Settings
from store import ChatPreferences, ChatStore, Turn

PROMPTS = [
    ("привет",),
    ("как дела?", "нормально, а у тебя?", "всё хорошо, спасибо"),
    ("что делаешь?", "читаю книгу"),
    ("пойдём гулять",),
]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def answering(answering_model_dir: Path) -> TransformersBackend:
    """A model that always answers, for the checks of what is stored."""
    return TransformersBackend(str(answering_model_dir), device="cpu", dtype="float32")


@pytest.fixture
def store(tmp_path: Path):
    store = ChatStore(tmp_path / "bot.sqlite3")
    yield store
    store.close()


@pytest.fixture
def make_generator(store: ChatStore):
    """Builds generators on the test's store, each recording its requests; all are shut down after the test."""
    made: list[ReplyGenerator] = []

    def make(backend: TransformersBackend, **settings: object) -> tuple[ReplyGenerator, RecordingBackend]:
        recording = RecordingBackend(backend)
        made.append(ReplyGenerator(recording, store, Settings(model_path=backend.name, **settings)))
        return made[-1], recording

    yield make
    for generator in made:
        generator.shutdown()


def greedy(model: TransformersBackend, **overrides: object) -> GenerationConfig:
    """The bot's own generation config (static cache, penalties, stops), decoding greedily."""
    values = model.generation_config(MODEL_CARD).to_diff_dict()
    for key in ("top_k", "top_p", "temperature"):
        values.pop(key)
    return GenerationConfig(**{**values, "do_sample": False, "max_new_tokens": 12, **overrides})


def requests(*dialogues: tuple[str, ...]) -> list[Request]:
    return [Request(dialogue, time.monotonic() + 60) for dialogue in dialogues]


def test_the_model_loads_once_with_its_facts(model: TransformersBackend, tiny_model_dir: Path) -> None:
    assert model.device.type == "cpu" and model.dtype == torch.float32
    with safe_open(tiny_model_dir / "model.safetensors", framework="pt") as weights:
        in_the_file = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118 - safe_open is no dict
    assert model.parameters == in_the_file
    assert model.load_seconds > 0


def test_a_missing_model_directory_says_where_and_how(tmp_path: Path) -> None:
    missing = tmp_path / "no_model_here"
    with pytest.raises(ModelLoadError) as caught:
        TransformersBackend(str(missing))
    assert str(missing) in str(caught.value) and "train.py" in str(caught.value)


def test_a_directory_without_a_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load the model"):
        TransformersBackend(str(tmp_path))


def test_hub_ids_reach_from_pretrained(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub id goes to from_pretrained as is; the hub itself is the only thing mocked."""
    seen = []

    def fake_hub(name: str, **kwargs: object) -> None:
        seen.append(name)
        raise OSError("offline")

    # The hub says it has the model, then fails to hand over the tokenizer.
    monkeypatch.setattr("huggingface_hub.get_hf_file_metadata", lambda url: None)
    # Nothing of it is cached here, so its tokenizer is AutoTokenizer's to load.
    monkeypatch.setattr("inference.codec.try_to_load_from_cache", lambda repo_id, filename: None)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", fake_hub)
    with pytest.raises(ModelLoadError, match="tinkoff-ai/ruDialoGPT-small: offline"):
        TransformersBackend("tinkoff-ai/ruDialoGPT-small")
    assert seen == ["tinkoff-ai/ruDialoGPT-small"]


def test_batched_replies_equal_unbatched_ones_under_greedy_decoding(model: TransformersBackend) -> None:
    config = greedy(model)
    alone = [model.generate(requests(dialogue), config)[0] for dialogue in PROMPTS]
    together = model.generate(requests(*PROMPTS), config)
    assert together == alone
    assert any(outcome.text for outcome in alone)


def test_a_row_stops_at_a_token_that_cuts_its_reply_with_the_reply_it_would_have_had(cutting_model_dir: Path) -> None:
    model = TransformersBackend(str(cutting_model_dir), device="cpu", dtype="float32")
    no_penalties = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
    stopping = greedy(model, **no_penalties)
    assert len(stopping.eos_token_id) == 3, "both speaker tokens and the cutting one"
    running_on = greedy(model, **no_penalties, eos_token_id=list(model.tokens.speakers))
    stopped, _ = model.generate_ids(requests(*PROMPTS), stopping)
    full, _ = model.generate_ids(requests(*PROMPTS), running_on)
    assert all(len(row) == 2 for row in stopped), "a word, then the token that cuts the reply: the call ends there"
    assert all(len(row) == 12 for row in full)
    replies = [model.codec.decode(row) for row in stopped]
    assert replies == [model.codec.decode(row) for row in full] and all(replies)


def test_a_requests_stop_token_ends_only_its_own_reply(model: TransformersBackend) -> None:
    # The pad id is suppressed, so as the only stop it lets every row run to its full length.
    unstoppable = greedy(model, max_new_tokens=16, eos_token_id=[model.tokens.pad])
    rows = {dialogue: model.generate_ids(requests(dialogue), unstoppable)[0][0] for dialogue in PROMPTS}
    # Make a token that one dialogue produces early, and another never produces, the stop token.
    short, long, stop = next(
        (a, b, token)
        for a in PROMPTS
        for b in PROMPTS
        for token in rows[a][:8]
        if a != b and token not in rows[b] and token not in model.tokens.speakers
    )
    config = greedy(model, max_new_tokens=16, eos_token_id=[stop])
    alone = [model.generate_ids(requests(dialogue), config)[0][0] for dialogue in (short, long)]
    together, _ = model.generate_ids(requests(short, long), config)
    cut = rows[short].index(stop) + 1
    assert together[0][:cut] == rows[short][:cut] and set(together[0][cut:]) <= {model.tokens.pad}
    assert together[1] == rows[long] == alone[1], "the other reply ran on to its full length"
    assert together[0][:cut] == alone[0][:cut]


def test_a_past_deadline_stops_only_its_own_row(model: TransformersBackend) -> None:
    config = greedy(model, max_new_tokens=30, eos_token_id=None)
    late, on_time = Request(PROMPTS[0], time.monotonic() - 1), Request(PROMPTS[1], time.monotonic() + 60)
    outcomes = model.generate([late, on_time], config)
    assert [o.timed_out for o in outcomes] == [True, False]
    assert outcomes[1] == model.generate([on_time], config)[0]


def test_the_sampler_keeps_transformers_top_k_top_p_distribution() -> None:
    torch.manual_seed(0)
    scores = torch.randn(6, 500) * 3
    scores[1, 7] = 50.0  # one token holds nearly all the mass: top_p keeps it alone
    for top_k, top_p, temperature in [(10, 0.95, 1.2), (3, 1.0, 0.7), (50, 0.5, 1.0), (1, 0.9, 2.0)]:
        reference = TemperatureLogitsWarper(temperature)(None, scores.clone())
        reference = TopKLogitsWarper(top_k)(None, reference)
        reference = torch.softmax(TopPLogitsWarper(top_p)(None, reference), dim=-1)
        ids, probs = TopKSampler(top_k, top_p, temperature).candidates(scores)
        ours = torch.zeros_like(scores).scatter_(-1, ids, probs / probs.sum(-1, keepdim=True))
        torch.testing.assert_close(ours, reference)


def test_the_sampler_draws_one_allowed_token_per_row() -> None:
    torch.manual_seed(1)
    scores = torch.randn(64, 300)
    sampler = TopKSampler(top_k=5, top_p=0.95, temperature=1.2)
    ids, probs = sampler.candidates(scores)
    out = sampler(torch.zeros(64, 1, dtype=torch.long), scores)
    chosen = out.argmax(-1)
    assert ((out == 0).sum(-1) == 1).all() and torch.isinf(out).sum() == 64 * 299
    allowed = [set(row_ids[row_probs > 0].tolist()) for row_ids, row_probs in zip(ids, probs, strict=True)]
    assert all(token in allowed[row] for row, token in enumerate(chosen.tolist()))
    assert len(set(chosen.tolist())) > 5, "not a draw: every row took the same rank"


def test_sampling_configs_move_into_the_sampler_and_others_pass_unchanged(model: TransformersBackend) -> None:
    lively = model.generation_config(MODEL_CARD)
    config, processors = fast_sampling(lively)
    assert not config.do_sample and config.top_k is None
    assert config.repetition_penalty == lively.repetition_penalty and config.cache_implementation == "static"
    assert [(p.top_k, p.top_p, p.temperature) for p in processors] == [(10, 0.95, 1.2)]
    for unchanged in (greedy(model), GenerationConfig(do_sample=True, top_k=0, top_p=0.9)):
        assert fast_sampling(unchanged) == (unchanged, [])


def test_sampled_replies_stay_within_the_top_k(model: TransformersBackend) -> None:
    # With top_k=1 sampling must give exactly the greedy reply: every draw is the likeliest token.
    one = model.generation_config(replace(MODEL_CARD, top_k=1, max_new_tokens=12))
    torch.manual_seed(3)
    assert model.generate(requests(*PROMPTS), one) == model.generate(requests(*PROMPTS), greedy(model))


async def test_a_reply_is_remembered_with_the_users_turn_once_delivered(
    answering: TransformersBackend, make_generator, store
) -> None:
    generator, _ = make_generator(answering)
    reply = await generator.reply(5, "привет @@ВТОРОЙ@@", "42")
    assert reply.text
    assert store.recent_turns(5, 10) == [], "nothing is stored before the reply is sent"
    generator.remember(5, reply)
    assert store.recent_turns(5, 10) == [Turn("42", "привет"), Turn("bot", reply.text)]


async def test_no_reply_is_empty_text_and_nothing_is_stored(silent_model_dir: Path, make_generator, store) -> None:
    generator, _ = make_generator(TransformersBackend(str(silent_model_dir), device="cpu"))
    reply = await generator.reply(5, "привет", "42")
    generator.remember(5, reply)
    assert reply.text == "" and store.recent_turns(5, 10) == []


async def test_the_prompt_holds_the_chats_recent_turns(model: TransformersBackend, make_generator, store) -> None:
    generator, recording = make_generator(model)
    store.add_turns(9, [Turn("1", "раз"), Turn("bot", "два"), Turn("1", "три"), Turn("bot", "четыре")])
    await generator.reply(9, "пять", "1")
    assert recording.requests[-1].turns == ("три", "четыре", "пять")


async def test_empty_text_after_cleaning_is_refused(model: TransformersBackend, make_generator) -> None:
    generator, recording = make_generator(model)
    with pytest.raises(EmptyMessageError):
        await generator.reply(1, "@@ПЕРВЫЙ@@ \u200b", "1")
    assert recording.requests == []


async def test_a_generation_past_its_timeout_is_stopped(answering: TransformersBackend, make_generator, store) -> None:
    generator, _ = make_generator(answering, generation_timeout=1e-6, max_new_tokens=40)
    with pytest.raises(ReplyTimeoutError):
        await generator.reply(1, "привет", "1")
    assert store.recent_turns(1, 10) == []


async def test_settings_reach_the_sampling_of_each_style(model: TransformersBackend, make_generator, store) -> None:
    generator, recording = make_generator(model, top_k=3, temperature=0.5, max_new_tokens=7)
    await generator.reply(1, "привет", "1")
    store.set_preferences(1, ChatPreferences(None, "calm"))
    await generator.reply(1, "привет", "1")
    lively, calm = recording.requests[0].sampling, recording.requests[1].sampling
    assert (lively.top_k, lively.temperature, lively.max_new_tokens) == (3, 0.5, 7)
    assert lively.top_p == 0.95 and lively.no_repeat_ngram_size == 2
    assert (calm.top_k, calm.temperature, calm.top_p, calm.max_new_tokens) == (3, 0.7, 0.9, 7)


async def test_more_chats_than_the_old_cap_share_one_ctranslate2_batch(
    answering_model_dir: Path, tmp_path: Path, make_generator, store
) -> None:
    """MAX_BATCH unset is the engine's measured default: CTranslate2 on a CPU batches more than the old cap of 16."""
    backend = CTranslate2Backend(str(answering_model_dir), cache_dir=tmp_path / "ct2", device="cpu")
    generator, recording = make_generator(backend)
    assert generator.tuning == tuning_for("ctranslate2", "cpu") and generator.tuning.max_batch > 16
    chats = range(1, generator.tuning.max_batch + 1)
    replies = await asyncio.gather(*(generator.reply(chat_id, "привет", "user") for chat_id in chats))
    assert all(reply.text for reply in replies)
    assert [len(batch) for batch in recording.batches] == [len(chats)], "every chat in one batch"


def test_max_batch_and_the_window_follow_the_engine_unless_set(model: TransformersBackend, store) -> None:
    measured = tuning_for("transformers", "cpu")
    generators = [
        ReplyGenerator(model, store, Settings(model_path=model.name, **settings))
        for settings in ({}, {"max_batch": 3}, {"batch_window_ms": 0.0})
    ]
    try:
        assert [generator.tuning for generator in generators] == [
            measured,
            replace(measured, max_batch=3),
            replace(measured, batch_window_ms=0.0),
        ]
    finally:
        for generator in generators:
            generator.shutdown()
