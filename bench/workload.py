"""The serving benchmark's workload: simulated chats writing at once to a server, and what their replies took.

No torch here (nor anything that imports it): the batched path runs these in a process of its own
(bench/batched.py), whose memory is the bot's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import ctranslate2
from aiogram.types import Chat, Message, Update

from bot.inbox import Inbox
from errors import BusyError, ReplyTimeoutError
from generator import ReplyGenerator
from inference.backend import BatchStats
from store import BOT_AUTHOR, ChatReply, ChatStore, Turn

HISTORY_WINDOW = 64
# The inbox keys updates on the bot they came to; the benchmark is one bot.
BENCH_BOT_ID = 1


def load_dialogues(path: Path) -> tuple[tuple[str, ...], ...]:
    """Short Russian group-chat dialogues: a chat's (user, bot) history, then the messages it sends."""
    return tuple(tuple(dialogue) for dialogue in json.loads(path.read_text(encoding="utf-8")))


DIALOGUES = load_dialogues(Path(__file__).with_name("dialogues.json"))


class Server(Protocol):
    """What a simulated chat talks to: the bot's ReplyGenerator or the naive pool."""

    async def reply(self, chat_id: int, text: str, author: str) -> ChatReply:
        """Answer one message of the chat."""
        ...

    def remember(self, chat_id: int, reply: ChatReply) -> None:
        """Add a delivered reply to the chat's history."""
        ...


@dataclass
class CallLog:
    """Every batch one backend generated since the last ``clear()``, as its ``on_batch`` hook reported it."""

    calls: list[BatchStats] = field(default_factory=list)

    def record(self, stats: BatchStats) -> None:
        """The backend's hook: keep one batch's figures."""
        self.calls.append(stats)

    def clear(self) -> None:
        """Forget the calls seen so far."""
        self.calls = []


class Hooked(Protocol):
    """A backend with an ``on_batch`` hook (all three engines have one)."""

    on_batch: Callable[[BatchStats], None] | None


def instrument(backend: Hooked) -> CallLog:
    """Log each batch the backend generates through its ``on_batch`` hook (its code path is otherwise untouched)."""
    log = CallLog()
    backend.on_batch = log.record
    return log


class LagMeter:
    """Wakes every ``period`` seconds and records how late the event loop let it wake.

    Each wake-up takes the GIL from the generating thread, so a fast ticker slows generation down:
    at 5 ms a bf16 generate() of one row ran about 15% slower on 2 CPU cores and 50% slower on a GPU.
    """

    def __init__(self, period: float) -> None:
        self.period = period
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, time.perf_counter() - started - self.period)

    def __enter__(self) -> LagMeter:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


class BotPath:
    """The bot's own path for one message: kept in the inbox, answered by the generator, remembered, done.

    The inbox costs one insert and one update in the same SQLite file per message; the single-chat figure
    includes them.
    """

    def __init__(self, generator: ReplyGenerator, inbox: Inbox) -> None:
        self._generator = generator
        self._inbox = inbox
        self._update_ids = itertools.count(1)
        self._received: dict[int, int] = {}

    async def reply(self, chat_id: int, text: str, author: str) -> ChatReply:
        """Keep the message, then generate its reply."""
        update_id = next(self._update_ids)
        self._inbox.receive(BENCH_BOT_ID, message_update(update_id, chat_id, text))
        self._received[chat_id] = update_id
        return await self._generator.reply(chat_id, text, author)

    def remember(self, chat_id: int, reply: ChatReply) -> None:
        """Add the reply to the history, and mark the message done."""
        self._generator.remember(chat_id, reply)
        self._inbox.done(BENCH_BOT_ID, self._received.pop(chat_id))


def message_update(update_id: int, chat_id: int, text: str) -> Update:
    """A private message as Telegram delivers it."""
    chat = Chat(id=chat_id, type="private")
    message = Message(message_id=update_id, date=datetime.now(UTC), chat=chat, text=text)
    return Update(update_id=update_id, message=message)


def inbox_cost(db_path: Path, messages: int = 500) -> float:
    """Median milliseconds one message costs the inbox (its insert and its update) in a file on this disk."""
    store = ChatStore(db_path)
    try:
        inbox = Inbox(store.connection)
        costs = []
        for update_id in range(1, messages + 1):
            started = time.perf_counter()
            inbox.receive(BENCH_BOT_ID, message_update(update_id, 1, "привет, как дела?"))
            inbox.done(BENCH_BOT_ID, update_id)
            costs.append(time.perf_counter() - started)
    finally:
        store.close()
    return percentile(costs, 50) * 1000


@dataclass
class RunStats:
    """One path at one chat count: what the measured rounds gave."""

    path: str
    chats: int
    rounds: int
    seconds: float
    latencies: list[float]
    replies_per_chat: dict[int, int]
    errors: int
    new_tokens: int
    prompt_tokens: float
    mean_batch: float
    generate_seconds: float
    worst_lag: float

    @classmethod
    def from_json(cls, text: str) -> RunStats:
        """The figures ``to_json`` wrote (in another process)."""
        values = json.loads(text)
        values["replies_per_chat"] = {int(chat_id): count for chat_id, count in values["replies_per_chat"].items()}
        return cls(**values)

    def to_json(self) -> str:
        """The figures as one line of JSON."""
        return json.dumps(asdict(self))

    @property
    def replies(self) -> int:
        """Replies received in the measured rounds."""
        return len(self.latencies)

    @property
    def replies_per_second(self) -> float:
        """Throughput in replies."""
        return self.replies / self.seconds

    @property
    def tokens_per_second(self) -> float:
        """Throughput in generated tokens (up to each reply's stop token)."""
        return self.new_tokens / self.seconds

    @property
    def p50(self) -> float:
        """Median latency of a reply, seconds."""
        return percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        """95th-percentile latency of a reply, seconds."""
        return percentile(self.latencies, 95)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation (nan for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def seed_engines() -> None:
    """Seed the random draws of the engines this process has loaded (CTranslate2's, and torch's if imported)."""
    ctranslate2.set_random_seed(0)
    if "torch" in sys.modules:  # not imported for it: the batched path's process may have no torch
        sys.modules["torch"].manual_seed(0)


def chat_script(index: int, author: str, messages: int) -> tuple[list[Turn], list[str]]:
    """The seeded history (``author``, bot) and the ``messages`` texts the ``index``-th chat sends."""
    dialogue = DIALOGUES[index % len(DIALOGUES)]
    history = [Turn(author, dialogue[0]), Turn(BOT_AUTHOR, dialogue[1])]
    lines = dialogue[2:]
    return history, [lines[(index + n) % len(lines)] for n in range(messages)]


async def _chat(server: Server, chat_id: int, author: str, messages: Sequence[str], latencies: list[float]) -> int:
    """Send the messages one after another; returns how many failed (timeout, queue full)."""
    errors = 0
    for text in messages:
        started = time.perf_counter()
        try:
            server.remember(chat_id, await server.reply(chat_id, text, author))
        except (ReplyTimeoutError, BusyError):
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    return errors


async def run_workload(
    *,
    path: str,
    server: Server,
    store: ChatStore,
    log: CallLog,
    chats: int,
    rounds: int,
    first_chat_id: int,
    lag_tick: float,
) -> RunStats:
    """Seed the chats' history, run one warm-up round, then ``rounds`` measured messages per chat at once."""
    chat_ids = [first_chat_id + i for i in range(chats)]
    scripts = {chat_id: chat_script(i, f"user{chat_id}", rounds + 1) for i, chat_id in enumerate(chat_ids)}
    for chat_id, (history, _) in scripts.items():
        store.clear(chat_id)
        store.add_turns(chat_id, history)
    seed_engines()
    warm: dict[int, list[float]] = {chat_id: [] for chat_id in chat_ids}
    warm_errors = await asyncio.gather(
        *(_chat(server, chat_id, f"user{chat_id}", msgs[:1], warm[chat_id]) for chat_id, (_, msgs) in scripts.items())
    )
    log.clear()
    per_chat: dict[int, list[float]] = {chat_id: [] for chat_id in chat_ids}
    with LagMeter(lag_tick) as lag:
        started = time.perf_counter()
        errors = await asyncio.gather(
            *(
                _chat(server, chat_id, f"user{chat_id}", msgs[1:], per_chat[chat_id])
                for chat_id, (_, msgs) in scripts.items()
            )
        )
        seconds = time.perf_counter() - started
    calls = list(log.calls)
    prompts = [p for call in calls for p in call.prompt_tokens]
    return RunStats(
        path=path,
        chats=chats,
        rounds=rounds,
        seconds=seconds,
        latencies=[latency for values in per_chat.values() for latency in values],
        replies_per_chat={chat_id: len(warm[chat_id]) + len(per_chat[chat_id]) for chat_id in chat_ids},
        errors=sum(errors) + sum(warm_errors),
        new_tokens=sum(n for call in calls for n in call.new_tokens),
        prompt_tokens=sum(prompts) / len(prompts) if prompts else math.nan,
        mean_batch=sum(len(call.new_tokens) for call in calls) / len(calls) if calls else math.nan,
        generate_seconds=sum(call.seconds for call in calls) / len(calls) if calls else math.nan,
        worst_lag=lag.worst,
    )
