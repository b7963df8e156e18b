"""BACKEND=openai: what an OpenAI-compatible server (vLLM) is asked, the reply path, faults, the start-up check."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from botprocess import bot_env, main_command
from fake_openai import FakeOpenAI
from harness import ADMIN, Harness
from waiting import PATIENCE, until

import texts
from inference.backend import ModelLoadError, Request
from inference.modes import HOROSCOPE, request_turn
from inference.openai_backend import OpenAIBackend, RemoteInferenceError
from inference.sampling import MODEL_CARD
from settings import ConfigError, load_settings


@pytest.fixture
async def server():
    async with FakeOpenAI() as fake:
        yield fake


async def connect(server: FakeOpenAI, model_dir: Path, **options: str) -> OpenAIBackend:
    # The start-up check runs its own event loop, as it does in main() before the bot's loop starts.
    return await asyncio.to_thread(OpenAIBackend, server.url, tokenizer_path=str(model_dir), **options)


@pytest.fixture
async def backend(server: FakeOpenAI, tiny_model_dir: Path):
    backend = await connect(server, tiny_model_dir)
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest.fixture
def harness(backend: OpenAIBackend, make_harness) -> Harness:
    return make_harness(backend, generation_timeout=PATIENCE)


@pytest.fixture
def impatient(backend: OpenAIBackend, make_harness) -> Harness:
    """A harness whose requests give up after 3 s, for the tests where the server never answers in time."""
    return make_harness(backend, generation_timeout=3)


async def test_the_request_carries_the_prompt_as_ids_stops_limits_and_sampling(
    server: FakeOpenAI, backend: OpenAIBackend
) -> None:
    turn = backend.clean_user_text("привет @@ВТОРОЙ@@")
    outcome = await backend.agenerate(Request((turn,), time.monotonic() + 10, MODEL_CARD))
    assert outcome.text == "привет, как дела?" and not outcome.timed_out
    [body] = server.requests
    tokens = backend.tokens
    assert body["model"] == "rudialogpt"
    assert body["prompt"][0] == tokens.first and body["prompt"][-1] == tokens.second
    assert body["prompt"].count(tokens.second) == 1, "a speaker token the user typed never reaches the model"
    assert body["stop_token_ids"] == [tokens.first, tokens.second]
    assert set(body["stop"]) == {"@@ПЕРВЫЙ@@", "@@ВТОРОЙ@@"}
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (40, 1.2, 0.95)
    assert (body["top_k"], body["repetition_penalty"]) == (10, 1.2)
    assert body["logit_bias"] == {str(tokens.pad): -100}
    assert len(body["prompt"]) <= server.max_model_len - 40


async def test_the_reply_is_cleaned_as_a_local_one(server: FakeOpenAI, backend: OpenAIBackend) -> None:
    server.reply = lambda body: " ну\u200b привет @@ПЕРВЫЙ@@ а это уже лишнее"
    outcome = await backend.agenerate(Request(("привет",), time.monotonic() + 10, MODEL_CARD))
    assert outcome.text == "ну привет"


async def test_chat_and_modes_work_through_the_server(server: FakeOpenAI, harness: Harness) -> None:
    assert await harness.send(1, "привет") == ["привет, как дела?"]
    [reply] = await harness.send(1, "/horoscope лев")
    assert reply.endswith("привет, как дела?")
    assert harness.generator.tasks[HOROSCOPE].backend is harness.generator.model
    assert server.requests[-1]["max_tokens"] == 120, "the task's own sampling"
    prompt = server.requests[-1]["prompt"]
    assert harness.generator.model.codec.tokenizer.decode(prompt[1:-1]).strip() == request_turn(HOROSCOPE, "Лев")


async def test_a_5xx_or_a_429_is_retried_within_the_deadline(
    server: FakeOpenAI, backend: OpenAIBackend, make_harness
) -> None:
    harness = make_harness(backend, generation_timeout=PATIENCE)
    server.fail_next(500, 429, 503)
    started = time.monotonic()
    assert await harness.send(1, "привет") == ["привет, как дела?"]
    assert len(server.requests) == 4
    assert time.monotonic() - started >= 1, "the 429's Retry-After: 1 was waited out"


async def test_a_server_that_keeps_failing_gets_the_apology_and_one_alert(
    server: FakeOpenAI, impatient: Harness
) -> None:
    server.fail_next(*[500] * 40)
    assert await impatient.send(1, "привет") == [texts.ERROR]
    assert await impatient.send(2, "привет") == [texts.ERROR]
    alerts = impatient.session.texts(ADMIN)
    assert len(alerts) == 1 and "InternalServerError" in alerts[0]


async def test_a_slow_server_times_out_with_the_timeout_answer(server: FakeOpenAI, impatient: Harness) -> None:
    server.slow_seconds = 3600  # it never answers while the test runs: the answer can come only from the deadline
    server.fail_next("slow")
    # GENERATION_TIMEOUT (3 s) bounds the request; the bound here only keeps a broken deadline from hanging the test.
    assert await asyncio.wait_for(impatient.send(1, "привет"), PATIENCE) == [texts.TIMEOUT]
    assert impatient.store.recent_turns(1, 10) == []


async def test_a_server_that_goes_away_and_comes_back(server: FakeOpenAI, impatient: Harness, harness: Harness) -> None:
    await server.stop()
    assert await impatient.send(1, "привет") == [texts.ERROR]
    await server.start()
    assert await harness.send(1, "привет") == ["привет, как дела?"]


async def test_a_failure_whose_retry_runs_out_of_time_is_the_failure_not_a_timeout(
    server: FakeOpenAI, backend: OpenAIBackend
) -> None:
    """Whether the deadline comes in the wait before a retry or in the retry itself, the server had failed."""
    server.slow_seconds = 3600
    server.fail_next(500, "slow")  # the retry never answers: only the deadline can end it
    with pytest.raises(RemoteInferenceError, match="InternalServerError"):
        await backend.agenerate(Request(("привет",), time.monotonic() + 5, MODEL_CARD))
    assert len(server.requests) == 2, "the 500 was retried (its wait is at most 0.5 s)"


async def test_a_dropped_connection_is_retried(server: FakeOpenAI, harness: Harness) -> None:
    server.fail_next("drop")
    assert await harness.send(1, "привет") == ["привет, как дела?"]
    assert len(server.requests) == 2


async def test_concurrency_is_bounded_and_answers_busy(
    server: FakeOpenAI, backend: OpenAIBackend, make_harness
) -> None:
    harness = make_harness(backend, max_pending=1, generation_timeout=PATIENCE)
    server.hold_after = 0  # the server holds the first reply until the test releases it
    first = asyncio.ensure_future(harness.send(1, "первый"))
    try:
        await until(lambda: len(server.requests) == 1, "the first request reached the server")
        assert await asyncio.wait_for(harness.send(2, "второй"), PATIENCE) == [texts.BUSY]
    finally:
        server.release.set()
    assert await first == ["привет, как дела?"]


async def test_the_start_up_check_names_what_is_wrong(tiny_model_dir: Path) -> None:
    async with FakeOpenAI(models=("a", "b")) as two, FakeOpenAI(api_key="secret") as locked:
        with pytest.raises(ModelLoadError, match=r"serves 2 models .* INFERENCE_MODEL"):
            await connect(two, tiny_model_dir)
        with pytest.raises(ModelLoadError, match="INFERENCE_MODEL c is not served"):
            await connect(two, tiny_model_dir, model="c")
        assert (await connect(two, tiny_model_dir, model="b")).model_name == "b"
        with pytest.raises(ModelLoadError, match="answered 401"):
            await connect(locked, tiny_model_dir, api_key="wrong")
        assert (await connect(locked, tiny_model_dir, api_key="secret")).model_name == "rudialogpt"
        closed = f"http://127.0.0.1:{two.port}/v1"
    # Leaving the block stopped the server and closed its port.
    with pytest.raises(ModelLoadError, match=f"INFERENCE_URL {closed} can't be reached"):
        await asyncio.to_thread(OpenAIBackend, closed, tokenizer_path=str(tiny_model_dir))


def test_backend_openai_needs_a_url_and_one_model() -> None:
    with pytest.raises(ConfigError, match="INFERENCE_URL must be set"):
        load_settings({"BACKEND": "openai"}, env_file=None, config_file=None)
    with pytest.raises(ConfigError, match="TOAST_MODEL_PATH"):
        load_settings(
            {"BACKEND": "openai", "INFERENCE_URL": "http://x:8000/v1", "TOAST_MODEL_PATH": "toasts"},
            env_file=None,
            config_file=None,
        )


async def test_a_folder_with_only_the_tokenizer_is_enough(server: FakeOpenAI, tiny_model_dir: Path, tmp_path) -> None:
    tokenizer_only = tmp_path / "tokenizer"
    tokenizer_only.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.suffix != ".safetensors" and path.name not in ("config.json", "generation_config.json"):
            shutil.copy(path, tokenizer_only)
    backend = await connect(server, tokenizer_only)
    try:
        outcome = await backend.agenerate(Request(("привет",), time.monotonic() + 10, MODEL_CARD))
        assert outcome.text == "привет, как дела?"
    finally:
        await backend.aclose()


def test_an_unreachable_inference_url_stops_start_up_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    settings = {"bot_token": "1:x", "backend": "openai", "inference_url": closed, "model_path": tiny_model_dir}
    done = subprocess.run(
        main_command(tmp_path), cwd=tmp_path, env=bot_env(**settings), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert f"INFERENCE_URL {closed} can't be reached" in line
