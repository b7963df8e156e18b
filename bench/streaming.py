"""Streaming benchmark: how soon a private chat sees text with drafts (STREAMING=auto), against the full reply without.

The serving benchmark's column for drafts, kept apart from it. The same model (ruDialoGPT-small's real shape
with random weights, built as ``bench.serving`` builds it), the bot's own ReplyGenerator and backend, and N
chats writing at once. Each chat sends its messages one after another, two ways, taking turns:

- off: ``generator.reply`` as in a group: the user sees text when the full reply is there;
- drafts: the bot's own drafts (``bot.drafts.Drafts`` with DRAFT_INTERVAL_MS) around the same call, sent by a
  real aiogram Bot to a stand-in Bot API server in a process of its own (``bench.bot_api_stub``, on this CPU
  too, which the real Telegram is not): the user sees text when the first draft was accepted.

For each N it prints replies/s and new tokens/s of both, the time to the first visible text (p50/p95) and
to the full reply, drafts sent per second, and the throughput of drafts over off. The last line::

    first_text_p50_16=X.XX full_reply_p50_16=Y.YY throughput_ratio_16=Z.ZZZ cpu_ratio_16=W.WWW

(at 16 chats, or the largest N run; seconds, and drafts over off). The CPU this process spent per reply
(its threads together; the stand-in server's own is left out, as Telegram's would be) shows the drafts'
cost even when other work on the machine moves the throughput from run to run. A random model rarely ends a reply
early, so each one runs to ``--new-tokens`` (120 by default, a toast's length).

    python -m bench.streaming                       # 1 and 16 chats, the backend BACKEND=auto picks
    python -m bench.streaming --backend transformers
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import ctranslate2
import torch
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import SendMessageDraft, TelegramMethod
from aiogram.methods.base import Response, TelegramType
from transformers.utils import logging as transformers_logging

from bench.serving import ENGINES, _model_dir, batched_settings, cpu_line
from bench.workload import CallLog, chat_script, instrument, percentile
from bench.workload import message_update as private_message
from bot.drafts import Drafts
from errors import BusyError, ReplyTimeoutError
from generator import ReplyGenerator, load_models, serving_tuning
from settings import Settings
from store import ChatStore

DEFAULT_CHATS = (1, 16)
DEFAULT_ROUNDS = {1: 6, 16: 2}
MODES = ("off", "drafts")


class FirstDrafts(BaseRequestMiddleware):
    """Notes when each chat's first draft since ``expect`` was accepted by the Bot API, and counts drafts."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.sent = 0

    def expect(self, chat_id: int) -> None:
        """A new reply in this chat: its first draft is yet to come."""
        self.first.pop(chat_id, None)

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        """Pass the call on; note the moment a draft came back accepted."""
        response = await make_request(bot, method)
        if isinstance(method, SendMessageDraft):
            self.sent += 1
            self.first.setdefault(method.chat_id, time.perf_counter())
        return response


@dataclass
class ModeRun:
    """One way of answering at one chat count, over its repeats: what the users waited for."""

    mode: str
    chats: int
    seconds: float = 0.0
    first_text: list[float] = field(default_factory=list)
    full_reply: list[float] = field(default_factory=list)
    new_tokens: int = 0
    drafts: int = 0
    errors: int = 0
    cpu_seconds: float = 0.0

    @property
    def replies_per_second(self) -> float:
        """Throughput in replies."""
        return len(self.full_reply) / self.seconds if self.seconds else math.nan

    @property
    def tokens_per_second(self) -> float:
        """Throughput in generated tokens."""
        return self.new_tokens / self.seconds if self.seconds else math.nan

    @property
    def cpu_per_reply(self) -> float:
        """CPU seconds this process spent per reply (all its threads): what other load on the machine can't move."""
        return self.cpu_seconds / len(self.full_reply) if self.full_reply else math.nan


class Chats:
    """N chats talking to the generator, with drafts or without."""

    def __init__(
        self, generator: ReplyGenerator, store: ChatStore, drafts: Drafts, bot: Bot, clock: FirstDrafts
    ) -> None:
        self._generator = generator
        self._store = store
        self._drafts = drafts
        self._bot = bot
        self._clock = clock

    async def _one(self, chat_id: int, text: str, mode: str, run: ModeRun) -> None:
        author = f"user{chat_id}"
        started = time.perf_counter()
        try:
            if mode == "off":
                reply = await self._generator.reply(chat_id, text, author)
            else:
                self._clock.expect(chat_id)
                async with self._drafts.show(self._bot, private_message(chat_id, chat_id, text).message) as progress:
                    reply = await self._generator.reply(chat_id, text, author, progress)
        except (ReplyTimeoutError, BusyError):
            run.errors += 1
            return
        done = time.perf_counter()
        self._generator.remember(chat_id, reply)
        run.full_reply.append(done - started)
        # Without drafts the user sees text with the full reply; with them, once the first draft was accepted.
        first = self._clock.first.get(chat_id, done) if mode == "drafts" else done
        run.first_text.append(first - started)

    async def run(self, mode: str, chat_ids: Sequence[int], messages: dict[int, list[str]], run: ModeRun) -> None:
        """Every chat sends its messages one after another, all chats at once; adds what was waited to ``run``."""

        async def chat(chat_id: int) -> None:
            for text in messages[chat_id]:
                await self._one(chat_id, text, mode, run)

        await asyncio.gather(*(chat(chat_id) for chat_id in chat_ids))

    def reset(self, chat_ids: Sequence[int], scripts: dict[int, tuple]) -> None:
        """Each chat's history back to its seeded two turns, so both ways see the same prompts."""
        for chat_id in chat_ids:
            self._store.clear(chat_id)
            self._store.add_turns(chat_id, scripts[chat_id][0])


async def measure(
    chats: Chats, log: CallLog, counter: FirstDrafts, count: int, rounds: int, repeats: int
) -> dict[str, ModeRun]:
    """Both ways at ``count`` chats: a warm-up round, then ``repeats`` times each way, the same messages.

    The ways take turns in the order off, drafts, drafts, off, …, so a load that rises or falls on the machine
    meanwhile weighs on both alike.
    """
    chat_ids = [count * 1000 + i for i in range(count)]
    scripts = {chat_id: chat_script(i, f"user{chat_id}", rounds + 1) for i, chat_id in enumerate(chat_ids)}
    warm_up = {chat_id: scripts[chat_id][1][:1] for chat_id in chat_ids}
    measured = {chat_id: scripts[chat_id][1][1:] for chat_id in chat_ids}
    runs = {mode: ModeRun(mode, count) for mode in MODES}
    chats.reset(chat_ids, scripts)
    await chats.run("drafts", chat_ids, warm_up, ModeRun("warm-up", count))
    for repeat in range(repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            chats.reset(chat_ids, scripts)
            torch.manual_seed(0)
            log.clear()
            drafts_before = counter.sent
            started, cpu = time.perf_counter(), time.process_time()
            await chats.run(mode, chat_ids, measured, runs[mode])
            runs[mode].seconds += time.perf_counter() - started
            runs[mode].cpu_seconds += time.process_time() - cpu
            runs[mode].new_tokens += sum(n for call in log.calls for n in call.new_tokens)
            runs[mode].drafts += counter.sent - drafts_before
    return runs


def print_table(runs: dict[str, ModeRun], interval_ms: float) -> None:
    """Both ways at one chat count, and drafts over off."""
    count = runs["off"].chats
    print(f"\n== {count} chat(s), DRAFT_INTERVAL_MS={interval_ms:g} ==")
    print(
        f"{'way':<7} {'replies':>7} {'errors':>6} {'replies/s':>9} {'tokens/s':>8} "
        f"{'first text p50':>14} {'p95':>6} {'full reply p50':>14} {'p95':>6} {'drafts/s':>8} {'cpu s/reply':>11}"
    )
    for run in runs.values():
        print(
            f"{run.mode:<7} {len(run.full_reply):>7} {run.errors:>6} {run.replies_per_second:>9.2f} "
            f"{run.tokens_per_second:>8.1f} {percentile(run.first_text, 50):>14.2f} "
            f"{percentile(run.first_text, 95):>6.2f} {percentile(run.full_reply, 50):>14.2f} "
            f"{percentile(run.full_reply, 95):>6.2f} "
            f"{run.drafts / run.seconds if run.seconds else math.nan:>8.1f} {run.cpu_per_reply:>11.3f}"
        )
    on, off = runs["drafts"], runs["off"]
    print(
        f"drafts/off: throughput {on.replies_per_second / off.replies_per_second:.3f}, CPU per reply "
        f"{on.cpu_per_reply / off.cpu_per_reply:.3f}, first visible text p50 {percentile(on.first_text, 50):.2f} s "
        f"against the full reply's {percentile(off.full_reply, 50):.2f} s"
    )


def final_line(results: dict[int, dict[str, ModeRun]]) -> str:
    """``first_text_p50_N=… full_reply_p50_N=… throughput_ratio_N=… cpu_ratio_N=…`` at 16 chats, or the most run."""
    count = 16 if 16 in results else max(results)
    on, off = results[count]["drafts"], results[count]["off"]
    return (
        f"first_text_p50_{count}={percentile(on.first_text, 50):.2f} "
        f"full_reply_p50_{count}={percentile(off.full_reply, 50):.2f} "
        f"throughput_ratio_{count}={on.replies_per_second / off.replies_per_second:.3f} "
        f"cpu_ratio_{count}={on.cpu_per_reply / off.cpu_per_reply:.3f}"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (the names of bench.serving's options where they mean the same)."""
    parser = argparse.ArgumentParser(prog="python -m bench.streaming", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=lambda text: tuple(int(n) for n in text.split(",")), default=DEFAULT_CHATS)
    parser.add_argument("--rounds", type=int, help="measured messages per chat and way (default: 6 for 1 chat, else 2)")
    parser.add_argument("--repeats", type=int, default=2, help="times each way is run, taking turns (default 2)")
    parser.add_argument("--new-tokens", type=int, default=120, help="MAX_NEW_TOKENS (default 120, a toast's length)")
    parser.add_argument("--draft-interval-ms", type=float, default=Settings.draft_interval_ms, help="DRAFT_INTERVAL_MS")
    parser.add_argument("--backend", choices=ENGINES[:2], help="BACKEND (default: what BACKEND=auto picks here)")
    parser.add_argument("--device", default=Settings.device, help="DEVICE")
    parser.add_argument("--dtype", default=Settings.dtype, help="DTYPE")
    parser.add_argument("--max-batch", type=int, help="MAX_BATCH (default: the engine's measured one)")
    parser.add_argument("--workers", type=int, default=Settings.workers, help="WORKERS")
    parser.add_argument("--window-ms", type=float, help="BATCH_WINDOW_MS (default: the engine's measured one)")
    parser.add_argument("--timeout", type=float, default=Settings.generation_timeout, help="GENERATION_TIMEOUT, s")
    parser.add_argument("--model-dir", type=Path, help="use this model directory instead of building the real shape")
    args = parser.parse_args(argv)
    args.url, args.api_key, args.served_model = None, "", ""  # what bench.serving's settings builder reads
    return args


async def _bench(args: argparse.Namespace, settings: Settings, generator: ReplyGenerator, store: ChatStore) -> dict:
    stub = subprocess.Popen(
        [sys.executable, "-m", "bench.bot_api_stub"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    session = AiohttpSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{stub.stdout.readline().strip()}"))
    counter = FirstDrafts()
    session.middleware(counter)
    bot = Bot("1:bench", session=session)
    try:
        chats = Chats(generator, store, Drafts("auto", settings.draft_interval_ms / 1000), bot, counter)
        log = instrument(generator.model)
        results = {}
        for count in args.chats:
            rounds = args.rounds or DEFAULT_ROUNDS.get(count, 2)
            results[count] = await measure(chats, log, counter, count, rounds, args.repeats)
            print_table(results[count], settings.draft_interval_ms)
        return results
    finally:
        await session.close()
        stub.communicate(timeout=10)


@dataclass
class StreamingReport:
    """Both ways at each chat count, and the final line."""

    results: dict[int, dict[str, ModeRun]]
    final_line: str


def main(argv: Sequence[str] | None = None) -> StreamingReport:
    """Run the benchmark, print the tables and the final line, and return them."""
    args = parse_args(argv)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    with _model_dir(args.model_dir) as (model_dir, source), tempfile.TemporaryDirectory(prefix="bench_db_") as db_dir:
        settings = replace(batched_settings(args, model_dir, Path(db_dir)), draft_interval_ms=args.draft_interval_ms)
        model, _ = load_models(settings)
        tuning = serving_tuning(model, settings)
        print(
            f"{cpu_line()}\ntorch {torch.__version__} ({torch.get_num_threads()} threads), ctranslate2 "
            f"{ctranslate2.__version__}, load average {os.getloadavg()[0]:.2f}\nmodel: {source}; {model.summary}, "
            f"WORKERS={settings.workers}, MAX_BATCH={tuning.max_batch}, MAX_NEW_TOKENS={settings.max_new_tokens}"
        )
        store = ChatStore(settings.db_path)
        generator = ReplyGenerator(model, store, settings)
        try:
            generator.warm_up()
            results = asyncio.run(_bench(args, settings, generator, store))
        finally:
            generator.shutdown()
            store.close()
    print(f"\ntotal {time.perf_counter() - started:.0f} s, load average now {os.getloadavg()[0]:.2f}")
    line = final_line(results)
    print(line)
    return StreamingReport(results, line)


if __name__ == "__main__":
    main()
