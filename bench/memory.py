"""Memory benchmark: the real bot process's resident memory after start-up and under 16 chats writing at once.

Starts ``python main.py`` as a subprocess against the tests' fake Bot API on 127.0.0.1 (and, for
``openai``, a fake inference server), waits for its start-up notice, then lets N chats (16 by default)
send their messages at once, round after round, each chat waiting for its reply before the next. It
reads VmRSS (resident now) and VmHWM (the process's peak resident) from /proc: after start-up and after
the chats. Models: ``demo`` (saved_model/) and ``rudialogpt`` (ruDialoGPT-small's real shape with random
weights, built as bench/serving.py builds it); engines: ctranslate2 (int8 on a CPU), transformers
(DTYPE=auto) and openai (a remote server: the bot keeps only the tokenizer). CTranslate2 is started
twice on one database folder: the first start converts the model (its peak is printed apart), the
second reuses the conversion, as every restart does. With ``--image`` the bot runs in a container of
that image instead (``--memory-limit`` as compose would set it; a bot the limit kills ends the run),
read from the host's /proc all the same. Linux only. Run from the project's folder:

    python -m bench.memory
    python -m bench.memory --models demo --engines ctranslate2 --chats 4
    python -m bench.memory --models rudialogpt --engines ctranslate2 --image rudialogpt-bot --memory-limit 2g
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import ctranslate2
import torch
from transformers.utils import logging as transformers_logging

from bench.rss import Memory, read_memory
from bench.serving import build_model, cpu_line
from bench.workload import DIALOGUES
from settings import Settings
from tests.fake_openai import FakeOpenAI
from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("demo", "rudialogpt")
ENGINES = ("ctranslate2", "transformers", "openai")
ADMIN = 777
STARTUP_TIMEOUT = 600
REPLY_TIMEOUT = 600
# The bot's settings are given explicitly; none leaks in from the environment this runs in.
SETTING_NAMES = frozenset(field.name.upper() for field in fields(Settings))


@dataclass
class Measurement:
    """One model on one engine: what the bot loaded, and its memory after start-up and after the chats."""

    model: str
    engine: str
    loaded: str
    conversion_peak: float | None
    started: Memory
    served: Memory
    replies: int


class Bot:
    """``python main.py`` with the given settings in the environment (none from the project's .env)."""

    def __init__(self, workdir: Path, settings: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in SETTING_NAMES}
        env.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **settings)
        self.log_path = workdir / f"bot-{len(list(workdir.glob('bot-*.log')))}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "main.py"), "--config-dir", str(workdir)],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def memory(self) -> Memory:
        """Its memory now."""
        return read_memory(self.process.pid)

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    async def stop(self) -> int:
        """SIGTERM, as docker stop sends it; its exit status (the fake servers keep serving meanwhile)."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, 120)

    def kill(self) -> None:
        """Make sure it is gone."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    @property
    def log(self) -> str:
        """What it wrote."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


class ContainerBot:
    """The bot in a container of ``image`` (host network, ``memory_limit`` if given), read from the host's /proc.

    The model folder is mounted read-only at /model, the work folder at /data (DB_PATH there, as in the image).
    """

    def __init__(self, image: str, memory_limit: str, workdir: Path, settings: dict[str, str]) -> None:
        self.name = f"bench-memory-{os.getpid()}-{time.monotonic_ns()}"
        workdir.chmod(0o777)  # the image's user writes there
        mounts = ["-v", f"{settings['MODEL_PATH']}:/model:ro", "-v", f"{workdir}:/data"]
        settings = {**settings, "MODEL_PATH": "/model", "DB_PATH": "/data/bot.sqlite3"}
        limit = ["--memory", memory_limit] if memory_limit else []
        environment = [option for name, value in settings.items() for option in ("-e", f"{name}={value}")]
        subprocess.run(
            ["docker", "run", "-d", "--network", "host", "--name", self.name, *limit, *mounts, *environment, image],
            check=True,
            capture_output=True,
        )
        self.pid = int(self._inspect("{{.State.Pid}}"))

    def _inspect(self, template: str) -> str:
        return subprocess.run(
            ["docker", "inspect", "-f", template, self.name], check=True, capture_output=True, text=True
        ).stdout.strip()

    def memory(self) -> Memory:
        """Its memory now."""
        return read_memory(self.pid)

    def alive(self) -> bool:
        """Whether it still runs."""
        return self._inspect("{{.State.Running}}") == "true"

    async def stop(self) -> int:
        """Stop it as `docker stop` does; its exit status."""
        await asyncio.to_thread(subprocess.run, ["docker", "stop", "-t", "60", self.name], capture_output=True)
        return int(self._inspect("{{.State.ExitCode}}"))

    def kill(self) -> None:
        """Remove the container."""
        subprocess.run(["docker", "rm", "-f", self.name], capture_output=True)

    @property
    def log(self) -> str:
        """What it wrote, and whether the memory limit killed it."""
        shown = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True)
        killed = self._inspect("{{.State.OOMKilled}}") == "true"
        return shown.stdout + shown.stderr + ("(killed by the memory limit)\n" if killed else "")


Launch = Callable[[Path, dict[str, str]], Bot | ContainerBot]


def is_to(chat_id: int) -> Callable[[dict[str, Any]], bool]:
    """A predicate on Bot API call params: sent to this chat."""
    return lambda params: str(params.get("chat_id")) == str(chat_id)


async def started(telegram: FakeTelegram, bot: Bot | ContainerBot, since: int) -> str:
    """Wait for the start-up notice to the admin; returns what it says was loaded. A bot that dies fails at once."""
    notice = lambda params: is_to(ADMIN)(params) and "запущен" in params["text"]  # noqa: E731
    for _ in range(STARTUP_TIMEOUT // 2):
        try:
            found = await telegram.wait_for("sendMessage", notice, 2, since=since)
        except AssertionError:
            if not bot.alive():
                break
            continue
        return " | ".join(found["text"].splitlines()[1:])
    raise SystemExit(f"the bot did not start:\n{bot.log}")


async def chat(telegram: FakeTelegram, chat_id: int, messages: Sequence[str]) -> int:
    """One chat sends its messages one after another, each once the previous one is answered."""
    for text in messages:
        since = len(telegram.calls)
        telegram.send_text(chat_id, text)
        await telegram.wait_for("sendMessage", is_to(chat_id), REPLY_TIMEOUT, since=since)
    return len(messages)


async def measure(
    model: str, model_dir: Path, engine: str, chats: int, rounds: int, launch: Launch = Bot
) -> Measurement:
    """Start the bot on one model and engine (twice for CTranslate2), then let the chats write; its memory."""
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as folder:
        workdir = Path(folder)
        async with FakeTelegram() as telegram, FakeOpenAI() as inference:
            settings = {
                "BOT_TOKEN": telegram.token,
                "TELEGRAM_API_BASE": telegram.base_url,
                "ADMIN_CHAT_ID": str(ADMIN),
                "MODEL_PATH": str(model_dir),
                "DB_PATH": str(workdir / "bot.sqlite3"),
                "BACKEND": engine,
                "INFERENCE_URL": inference.url if engine == "openai" else "",
            }
            conversion_peak = None
            if engine == "ctranslate2":
                first = launch(workdir, settings)
                try:
                    await started(telegram, first, 0)
                    conversion_peak = first.memory().peak
                    if await first.stop() != 0:
                        raise SystemExit(f"the bot did not stop cleanly:\n{first.log}")
                finally:
                    first.kill()
            bot = launch(workdir, settings)
            try:
                loaded = await started(telegram, bot, len(telegram.calls))
                after_start = bot.memory()
                scripts = [DIALOGUES[i % len(DIALOGUES)][2:] for i in range(chats)]
                plans = [[lines[(i + n) % len(lines)] for n in range(rounds)] for i, lines in enumerate(scripts)]
                replies = await asyncio.gather(*(chat(telegram, 1001 + i, plan) for i, plan in enumerate(plans)))
                after_chats = bot.memory()
                if await bot.stop() != 0:
                    raise SystemExit(f"the bot did not stop cleanly:\n{bot.log}")
            finally:
                bot.kill()
    return Measurement(model, engine, loaded, conversion_peak, after_start, after_chats, sum(replies))


def readable(folder: Path) -> Path:
    """The folder, made readable by everyone (a container's user too)."""
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)
    return folder


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: demo, rudialogpt")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated: " + ", ".join(ENGINES))
    parser.add_argument("--chats", type=int, default=16, help="chats writing at once (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="messages each chat sends, one after another (3)")
    parser.add_argument("--image", help="run the bot in a container of this image (docker, host network)")
    parser.add_argument("--memory-limit", default="", help="with --image: docker run --memory, e.g. 2g")
    args = parser.parse_args(argv)
    args.models, args.engines = args.models.split(","), args.engines.split(",")
    for given, allowed, name in ((args.models, MODELS, "--models"), (args.engines, ENGINES, "--engines")):
        if unknown := set(given) - set(allowed):
            parser.error(f"{name}: unknown {', '.join(sorted(unknown))}; choose from {', '.join(allowed)}")
    return args


def print_table(measurements: Sequence[Measurement], chats: int) -> None:
    """The figures, one row per model and engine, in MiB."""
    print(
        f"\n{'model':<11} {'engine':<13} {'RSS started':>11} {'peak started':>12} "
        f"{f'RSS {chats} chats':>13} {f'peak {chats} chats':>14} {'peak converting':>15} {'replies':>7}"
    )
    for m in measurements:
        converting = f"{m.conversion_peak:.0f}" if m.conversion_peak is not None else "-"
        print(
            f"{m.model:<11} {m.engine:<13} {m.started.rss:>11.0f} {m.started.peak:>12.0f} "
            f"{m.served.rss:>13.0f} {m.served.peak:>14.0f} {converting:>15} {m.replies:>7}"
        )
    for m in measurements:
        print(f"{m.model}, {m.engine}: {m.loaded}")


def main(argv: Sequence[str] | None = None) -> list[Measurement]:
    """Measure each model on each engine; print the figures and return them."""
    args = parse_args(argv)
    transformers_logging.disable_progress_bar()
    print(
        f"{cpu_line()}\n"
        f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"ctranslate2 {ctranslate2.__version__}, load average {os.getloadavg()[0]:.2f}\n"
        f"{args.chats} chats at once, {args.rounds} messages each; memory in MiB (VmRSS, VmHWM from /proc)",
        flush=True,
    )
    launch: Launch = Bot
    if args.image:
        launch = functools.partial(ContainerBot, args.image, args.memory_limit)
        print(f"in containers of {args.image}, memory limit {args.memory_limit or 'none'}", flush=True)
    measurements = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_model_") as built:
        for model in args.models:
            model_dir = ROOT / "saved_model" if model == "demo" else readable(build_model(Path(built)))
            for engine in args.engines:
                begun = time.perf_counter()
                measurements.append(asyncio.run(measure(model, model_dir, engine, args.chats, args.rounds, launch)))
                print(f"measured {model} on {engine} in {time.perf_counter() - begun:.0f} s", flush=True)
    print_table(measurements, args.chats)
    return measurements


if __name__ == "__main__":
    main()
