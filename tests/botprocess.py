"""Run ``python main.py`` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fake_telegram import FakeTelegram
from gated_main import HELD

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
GATED_MAIN = Path(__file__).resolve().parent / "gated_main.py"
# Logged by the bot once it stops taking updates and waits for the replies in flight (app.run_bot).
STOPPING = "stopping: waiting up to"
_LOG_POLL_SECONDS = 0.05
ADMIN = 777


def bot_env(**settings: object) -> dict[str, str]:
    """The environment for a bot process: this one's, without any bot settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "TELEGRAM_", "MODEL_", "ADMIN_"))}
    env.update(PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env.update(
        {name.upper(): ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for name, v in settings.items()}
    )
    return env


def main_command(workdir: Path, *args: str, gate: Path | None = None) -> list[str]:
    """``python main.py ARGS`` reading .env and config.py from ``workdir``, not the project's (a developer's own).

    With ``gate``, tests/gated_main.py runs it instead: each generation waits until that file exists.
    """
    program = [str(MAIN)] if gate is None else [str(GATED_MAIN), str(gate)]
    return [sys.executable, *program, "--config-dir", str(workdir), *args]


class BotProcess:
    """``python main.py`` in ``workdir``, with its settings files read from there, logging to a file.

    With ``gate`` (a file path), generation is held until that file exists (tests/gated_main.py).
    """

    def __init__(self, workdir: Path, *args: str, gate: Path | None = None, **settings: object) -> None:
        self.log_path = workdir / f"bot-{len(list(workdir.glob('bot-*.log')))}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            main_command(workdir, *args, gate=gate),
            cwd=workdir,
            env=bot_env(**settings),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    async def wait_for_log(self, text: str, count: int = 1, timeout: float = 60) -> None:
        """Wait until the log holds ``text`` ``count`` times; AssertionError with the log after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            # Whether it ended is read first: what it wrote before it ended is in the log read after.
            ended = self.process.poll() is not None
            if self.log.count(text) >= count:
                return
            if ended or time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout}s for {count}x {text!r} in the log:\n{self.log}")
            await asyncio.sleep(_LOG_POLL_SECONDS)

    async def wait_until_held(self) -> None:
        """Wait until a generation waits at the gate: a reply is in flight, and stays so until the gate opens."""
        await self.wait_for_log(HELD)

    def rss_mb(self) -> float:
        """Resident memory of the process, in MiB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kib / 1024

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal to the process."""
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 60) -> int:
        """Wait for the process to exit; returns its status."""
        try:
            return await asyncio.to_thread(self.process.wait, timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """Stop the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


STARTUP_TIMEOUT = 120


def is_to(chat_id: int) -> Callable[[dict[str, Any]], bool]:
    """A predicate on Bot API call params: sent to this chat."""
    return lambda params: str(params.get("chat_id")) == str(chat_id)


def _start_notice(params: dict[str, Any]) -> bool:
    return is_to(ADMIN)(params) and "запущен" in params["text"]


async def start_bot(
    fake: FakeTelegram, tmp_path: Path, model_dir: Path, *, gate: Path | None = None, **settings: object
) -> BotProcess:
    """Start the bot against the fake Bot API and wait for its start-up notice to the admin.

    With ``gate``, each generation after the warm-up waits until that file exists (tests/gated_main.py).
    """
    defaults = {
        "bot_token": fake.token,
        "telegram_api_base": fake.base_url,
        "model_path": model_dir,
        "admin_chat_id": ADMIN,
        "db_path": tmp_path / "bot.sqlite3",
        "shutdown_timeout": 20,
    }
    since = len(fake.calls)  # an earlier run's notice doesn't count
    bot = BotProcess(tmp_path, gate=gate, **{**defaults, **settings})
    try:
        await fake.wait_for("sendMessage", _start_notice, STARTUP_TIMEOUT, since=since)
    except AssertionError:
        bot.kill()
        raise AssertionError(f"the bot did not start:\n{bot.log}") from None
    return bot


async def stop_bot(bot: BotProcess) -> None:
    """SIGTERM, and the bot must exit with status 0."""
    bot.signal(signal.SIGTERM)
    assert await bot.wait(60) == 0, bot.log
