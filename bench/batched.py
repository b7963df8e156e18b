"""The serving benchmark's batched path in a process of its own, as the bot runs it: ``python -m bench.batched``.

bench.serving starts it with the settings as JSON on its command line. It loads the models as the bot does
(generator.load_models; bench.serving made the CTranslate2 conversion before, as a restart finds it), warms
them up, prints one JSON line (its backend's summary, the seconds that took, whether torch got imported,
its MAX_BATCH and BATCH_WINDOW_MS) and then answers each workload it reads on stdin (one JSON line: chats,
rounds, first_chat_id, lag_tick) with its RunStats as one JSON line. It holds no naive model and imports no
torch unless its engine needs it, so its peak resident memory is the bot's own (the chats' inbox and history
included, the Telegram side aside).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import IO, Any

from bench.rss import read_memory
from bench.workload import BotPath, RunStats, instrument, run_workload
from bot.inbox import Inbox
from generator import ReplyGenerator, load_models
from inference.tuning import Tuning
from settings import Settings
from store import ChatStore

ROOT = Path(__file__).resolve().parent.parent


def settings_json(settings: Settings) -> str:
    """The settings that differ from the defaults, as JSON (every one the benchmark sets is a str or a number)."""
    values = ((field.name, getattr(settings, field.name), field.default) for field in fields(settings))
    return json.dumps({name: value for name, value, default in values if value != default})


class BatchedProcess:
    """The parent's side: starts the process, hands it workloads, reads its memory."""

    def __init__(self, settings: Settings) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.batched", settings_json(settings)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        ready = self._answer()
        self.summary: str = ready["summary"]
        self.load_seconds: float = ready["load_seconds"]
        self.torch_loaded: bool = ready["torch"]
        self.tuning = Tuning(**ready["tuning"])

    def run(self, **workload: Any) -> RunStats:
        """One workload (run_workload's keywords other than the server's), run there."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(workload) + "\n")
        self.process.stdin.flush()
        return RunStats.from_json(json.dumps(self._answer()))

    def peak_mb(self) -> float:
        """Its peak resident memory so far, MiB (Linux; nan elsewhere)."""
        try:
            return read_memory(self.process.pid).peak
        except OSError:
            return float("nan")

    def close(self) -> None:
        """Let it finish and end (stdin closed); killed if it doesn't within a minute."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.close()
            raise SystemExit(f"the batched path's process ended (status {self.process.returncode}); its log is above")
        return json.loads(line)


async def serve(settings: Settings, requests: IO[str], answers: IO[str]) -> None:
    """Load the models as the bot does, warm them up, say so, then run each workload read from ``requests``.

    Loading runs in a thread: the openai backend checks its server in an event loop of its own.
    """
    started = time.perf_counter()
    model, task_models = await asyncio.to_thread(load_models, settings)
    store = ChatStore(settings.db_path)
    generator = ReplyGenerator(model, store, settings, task_models)
    log = instrument(model)
    try:
        generator.warm_up()
        seconds = time.perf_counter() - started
        ready = {
            "summary": model.summary,
            "load_seconds": seconds,
            "torch": "torch" in sys.modules,
            "tuning": asdict(generator.tuning),
        }
        answers.write(json.dumps(ready) + "\n")
        answers.flush()
        path = BotPath(generator, Inbox(store.connection))
        while line := await asyncio.to_thread(requests.readline):
            stats = await run_workload(path="batched", server=path, store=store, log=log, **json.loads(line))
            answers.write(stats.to_json() + "\n")
            answers.flush()
    finally:
        generator.shutdown()
        await generator.aclose()
        store.close()


def main() -> None:
    """Serve the parent on the stdin and stdout it gave; anything else written to stdout goes to stderr."""
    logging.basicConfig(level=logging.WARNING, format="batched path: %(levelname)s %(name)s: %(message)s")
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    settings = Settings(**json.loads(sys.argv[1]))
    asyncio.run(serve(settings, sys.stdin, answers))


if __name__ == "__main__":
    main()
