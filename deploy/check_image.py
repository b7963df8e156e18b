"""The image's checks against real containers (deploy/check.sh runs this once the image is built).

``python deploy/check_image.py IMAGE`` with the project's venv. The containers use the host's network, so
they reach a fake Bot API (tests/fake_telegram.py) and a fake inference server (tests/fake_openai.py) that
holds each completion until this script releases it: a ``docker stop`` lands during a generation by
construction. Checks, in order: the console answers in Russian; the bot answers a private message and its
health check passes; ``docker stop`` during a generation sends the reply and exits 0; a container created
again on the same volume still has the chat's history. Exit status 0 when all pass.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from botprocess import ADMIN, is_to  # noqa: E402 - the tests' helpers, found through the path above
from fake_openai import FakeOpenAI  # noqa: E402
from fake_telegram import FakeTelegram  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

import texts  # noqa: E402

CHAT = 5
REPLIES = (" у меня всё отлично", " пеку пироги с капустой", " читаю про море")
STARTUP_TIMEOUT = 300
CYRILLIC = re.compile("[А-Яа-яЁё]")


class CheckFailed(AssertionError):
    """One of the image's checks failed; the message says which and what was seen."""


class HeldInference(FakeOpenAI):
    """The fake inference server, holding each completion until the check releases it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.held: asyncio.Queue[tuple[dict[str, Any], asyncio.Event]] = asyncio.Queue()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        gate = asyncio.Event()
        await self.held.put((await request.json(), gate))
        await gate.wait()
        return await super()._completions(request)

    async def next_request(self, timeout: float = 60) -> tuple[dict[str, Any], asyncio.Event]:
        """The next completion request that arrived, and the gate that lets its answer go."""
        try:
            return await asyncio.wait_for(self.held.get(), timeout)
        except TimeoutError:
            raise CheckFailed(f"no completion request came to the inference server in {timeout} s") from None


def docker(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a docker command; its output whatever its status."""
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, timeout=timeout)


def logs(container: str) -> str:
    """What the container wrote so far, stdout and stderr together."""
    shown = docker("logs", container)
    return shown.stdout + shown.stderr


def check_console(image: str) -> str:
    """``docker run -i IMAGE python main.py --console`` answers a line in Russian (greedy, so every run alike)."""
    run = docker("run", "-i", "--rm", "-e", "TOP_K=1", image, "python", "main.py", "--console", stdin="привет\n")
    lines = run.stdout.splitlines()
    if run.returncode != 0 or lines[:1] != [texts.CONSOLE_GREETING] or len(lines) < 2:
        raise CheckFailed(f"the console failed (status {run.returncode}):\n{run.stdout}{run.stderr}")
    reply = lines[1]
    text = reply.removeprefix("бот> ")
    if text == reply or not CYRILLIC.search(text) or text == texts.FALLBACK_REPLY:
        raise CheckFailed(f"the console's reply is not the model's Russian: {reply!r}")
    return reply


def bot_settings(telegram: FakeTelegram, inference: FakeOpenAI) -> str:
    """The .env the bot's containers read: the fakes on the host, and the remote backend."""
    return "\n".join(
        [
            f"BOT_TOKEN={telegram.token}",
            f"TELEGRAM_API_BASE={telegram.base_url}",
            f"ADMIN_CHAT_ID={ADMIN}",
            "BACKEND=openai",
            f"INFERENCE_URL={inference.url}",
            f"INFERENCE_API_KEY={inference.api_key}",
            "CONTEXT_TURNS=10",  # so the last prompt shows every turn before it
            "",
        ]
    )


async def start(image: str, name: str, volume: str, env_file: Path, telegram: FakeTelegram) -> None:
    """Create and start the bot's container on ``volume``; returns once it told the admin it started."""
    since = len(telegram.calls)
    created = docker(
        *("run", "-d", "--network", "host", "--name", name, "--env-file", str(env_file), "-v", f"{volume}:/data"),
        image,
    )
    if created.returncode != 0:
        raise CheckFailed(f"docker run failed: {created.stderr}")
    started = lambda params: is_to(ADMIN)(params) and params["text"].startswith("Бот запущен")  # noqa: E731
    try:
        await telegram.wait_for("sendMessage", started, STARTUP_TIMEOUT, since=since)
    except AssertionError:
        raise CheckFailed(f"the bot did not start:\n{logs(name)}") from None


async def exchange(telegram: FakeTelegram, inference: HeldInference, text: str, reply: str) -> dict[str, Any]:
    """A user writes ``text``; the server answers ``reply`` at once; returns the completion request."""
    since = len(telegram.calls)
    telegram.send_text(CHAT, text)
    body, gate = await inference.next_request()
    inference.reply = lambda body: reply
    gate.set()
    sent = await telegram.wait_for("sendMessage", is_to(CHAT), 60, since=since)
    if sent["text"] != reply.strip():
        raise CheckFailed(f"the bot answered {sent['text']!r}, not the server's {reply.strip()!r}")
    return body


async def wait_for_log(container: str, line: str, timeout: float = 60) -> None:
    """Return once the container's log has ``line`` (polled; ``timeout`` bounds a failure, not a success)."""
    for _ in range(int(timeout / 0.2)):
        if line in logs(container):
            return
        await asyncio.sleep(0.2)
    raise CheckFailed(f"the container never logged {line!r}:\n{logs(container)}")


async def stop_during_generation(name: str, telegram: FakeTelegram, inference: HeldInference) -> None:
    """``docker stop`` while the server holds a reply: the reply still goes out, and the bot exits with status 0."""
    since = len(telegram.calls)
    telegram.send_text(CHAT, "что делаешь?")
    _, gate = await inference.next_request()
    stopping = await asyncio.create_subprocess_exec(
        "docker", "stop", "-t", "60", name, stdout=asyncio.subprocess.DEVNULL
    )
    await wait_for_log(name, "Received SIGTERM signal")
    inference.reply = lambda body: REPLIES[1]
    gate.set()
    sent = await telegram.wait_for("sendMessage", is_to(CHAT), 60, since=since)
    await stopping.wait()
    status = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
    if sent["text"] != REPLIES[1].strip() or status != "0":
        raise CheckFailed(f"docker stop gave exit status {status}, reply {sent['text']!r}:\n{logs(name)}")


async def check_bot(image: str) -> list[str]:
    """The Telegram checks, on a fresh volume removed afterwards; returns what each showed."""
    volume, names = f"rudialogpt-check-{os.getpid()}", [f"rudialogpt-check-{os.getpid()}-{n}" for n in (1, 2)]
    tokenizer = Tokenizer.from_file(str(ROOT / "saved_model" / "tokenizer.json"))
    seen = []
    async with FakeTelegram() as telegram, HeldInference(api_key="check-key") as inference:
        with tempfile.TemporaryDirectory() as folder:
            env_file = Path(folder) / ".env"
            env_file.write_text(bot_settings(telegram, inference), encoding="utf-8")
            try:
                await start(image, names[0], volume, env_file, telegram)
                await exchange(telegram, inference, "привет, как дела?", REPLIES[0])
                seen.append("the container answered a private message")
                health = docker("exec", names[0], "python", "-m", "bot.health")
                if health.returncode != 0:
                    raise CheckFailed(f"the health check failed in the running container: {health.stderr}")
                seen.append(f"its health check: {(health.stdout + health.stderr).strip()}")
                await stop_during_generation(names[0], telegram, inference)
                seen.append("docker stop during a generation: the reply was sent, exit status 0")
                docker("rm", names[0])
                await start(image, names[1], volume, env_file, telegram)
                body = await exchange(telegram, inference, "а завтра что?", REPLIES[2])
                prompt = tokenizer.decode(body["prompt"], skip_special_tokens=False)
                if not all(turn.strip() in prompt for turn in ("привет, как дела?", *REPLIES[:2], "что делаешь?")):
                    raise CheckFailed(f"the new container's prompt lacks the chat's history: {prompt!r}")
                seen.append(f"a new container on the same volume kept the history: {prompt!r}")
                stopped = docker("stop", "-t", "60", names[1], timeout=90)
                if stopped.returncode != 0:
                    raise CheckFailed(f"docker stop failed: {stopped.stderr}")
            finally:
                for name in names:
                    docker("rm", "-f", name)
                docker("volume", "rm", "-f", volume)
    return seen


def main(argv: list[str] | None = None) -> int:
    """Run the checks against IMAGE; 0 when all pass, 1 (with what was seen) when one fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", help="the image to check, e.g. rudialogpt-bot")
    args = parser.parse_args(argv)
    try:
        print(f"ok: the console answered in Russian: {check_console(args.image)}", flush=True)
        for line in asyncio.run(check_bot(args.image)):
            print(f"ok: {line}", flush=True)
    except CheckFailed as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
