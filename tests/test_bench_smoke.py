"""bench/serving.py still runs end to end: on the tiny model, a few chats, two new tokens (no ../shared)."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from bench import streaming
from bench.serving import main


@pytest.mark.parametrize(("counts", "backend"), [((1, 2), "transformers"), ((1, 16, 32), "ctranslate2")])
def test_the_serving_benchmark_runs_and_prints_its_final_line(
    tiny_model_dir: Path, counts: tuple[int, ...], backend: str, capsys
) -> None:
    chats = ",".join(map(str, counts))
    options = ["--model-dir", str(tiny_model_dir), "--chats", chats, "--new-tokens", "2", "--rounds", "2"]
    report = main([*options, "--backend", backend])

    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last == report.final_line
    assert out.count(f"batched: {backend}, cpu") == 1 + len(counts), "in the header and each table"
    many = 16 if 16 in counts else counts[-1]
    number = r"\d+\.\d\d"
    speedup_32 = number if 32 in counts else "nan"
    assert re.fullmatch(
        rf"speedup_{many}={number} p95_ratio_{many}={number} single_ratio={number} max_lag_ms=\d+ "
        rf"speedup_32={speedup_32} rss_mb=\d+",
        last,
    ), last
    assert sorted((run.path, run.chats) for run in report.runs) == sorted(
        (path, count) for path in ("batched", "naive") for count in counts
    )
    # The batched path's own process: its peak resident memory is a loaded model's, far from nothing.
    assert int(last.rsplit("rss_mb=", 1)[1]) > 50
    for run in report.runs:
        assert run.errors == 0, run
        # Every chat got its warm-up reply and both measured ones.
        assert len(run.replies_per_chat) == run.chats
        assert set(run.replies_per_chat.values()) == {3}, run.replies_per_chat
        assert run.replies == 2 * run.chats
        assert 0 < run.new_tokens <= 2 * run.replies
        assert run.seconds > 0 and run.worst_lag >= 0
    assert max(run.mean_batch for run in report.runs if run.path == "batched") > 1, "concurrent chats must batch"
    assert all(run.mean_batch == 1 for run in report.runs if run.path == "naive")


def test_chat_counts_that_are_not_numbers_get_one_clear_line(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--chats", "abc"])
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "python -m bench.serving: error: argument --chats: expected chat counts such as 1,16 " + (
        "(whole numbers from 1), got 'abc'"
    )


def test_the_benchmark_measures_a_remote_server_and_the_inbox(tiny_model_dir: Path, capsys) -> None:
    loop = asyncio.new_event_loop()
    server = FakeOpenAI()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        options = ["--model-dir", str(tiny_model_dir), "--chats", "1,4", "--new-tokens", "2", "--rounds", "2"]
        report = main([*options, "--backend", "openai", "--url", server.url])
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    out = capsys.readouterr().out
    assert f"batched: openai, {server.url}, rudialogpt" in out
    assert re.search(r"inbox: one insert and one update in the database per message, \d+\.\d\d ms each", out)
    batched = [run for run in report.runs if run.path == "batched"]
    assert all(run.errors == 0 and run.replies == 2 * run.chats for run in batched)
    assert len(server.requests) == sum(3 * run.chats for run in batched), "warm-up and measured messages, each once"
    assert all(run.new_tokens == 3 * run.replies for run in batched), "counted from the server's usage"


def test_the_streaming_benchmark_compares_drafts_with_the_full_reply(endless_model_dir: Path, capsys) -> None:
    options = ["--model-dir", str(endless_model_dir), "--chats", "1,3", "--new-tokens", "12", "--rounds", "1"]
    report = streaming.main([*options, "--repeats", "1", "--draft-interval-ms", "0", "--backend", "ctranslate2"])

    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == report.final_line
    number = r"\d+\.\d\d"
    ratio = r"\d+\.\d{3}"
    expected = rf"first_text_p50_3={number} full_reply_p50_3={number} throughput_ratio_3={ratio} cpu_ratio_3={ratio}"
    assert re.fullmatch(expected, report.final_line), report.final_line
    assert "CPU: " in out and "load average" in out
    for count, runs in report.results.items():
        off, on = runs["off"], runs["drafts"]
        assert len(off.full_reply) == len(on.full_reply) == count and off.errors == on.errors == 0
        assert off.first_text == off.full_reply, "without drafts the first text is the full reply"
        assert on.drafts >= count, "every reply of a word or more per token showed a draft"
        assert off.drafts == 0 and off.new_tokens == on.new_tokens == 12 * count
        assert all(first <= full for first, full in zip(on.first_text, on.full_reply, strict=True))
        assert off.cpu_per_reply > 0 and on.cpu_per_reply > 0
