"""A terminal chat with the same generator the bot uses, for trying a model without Telegram."""

from __future__ import annotations

import asyncio
import sys

import texts
from errors import BusyError, EmptyMessageError, ReplyTimeoutError
from generator import ReplyGenerator

CONSOLE_CHAT_ID = 0
CONSOLE_AUTHOR = "console"
PROMPT = "вы> "


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run_console(generator: ReplyGenerator) -> None:
    """Read lines from stdin and answer each; /reset clears the history, /exit or end of input quits."""
    loop = asyncio.get_running_loop()
    generator.forget(CONSOLE_CHAT_ID)
    _write("Консольный чат с моделью. /reset — забыть историю, /exit — выход.")
    while True:
        sys.stdout.write(PROMPT)
        sys.stdout.flush()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "/exit":
            _write("")
            return
        if line.strip() == "/reset":
            generator.forget(CONSOLE_CHAT_ID)
            _write(texts.HISTORY_CLEARED)
            continue
        try:
            answer = await generator.reply(CONSOLE_CHAT_ID, line, CONSOLE_AUTHOR)
            generator.remember(CONSOLE_CHAT_ID, answer)
            reply = answer.text or texts.FALLBACK_REPLY
        except EmptyMessageError:
            reply = texts.EMPTY_TEXT
        except ReplyTimeoutError:
            reply = texts.TIMEOUT
        except BusyError:
            reply = texts.BUSY
        _write(f"бот> {reply}")
