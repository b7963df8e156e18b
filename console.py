"""A terminal chat with the same generator the bot uses, for trying a model without Telegram."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import texts
from errors import BusyError, EmptyMessageError, ReplyTimeoutError
from generator import ReplyGenerator
from inference.dialogue import MAX_CONTEXT_TURNS, parse_context_turns
from store import ChatPreferences, ChatStore

CONSOLE_CHAT_ID = 0
CONSOLE_AUTHOR = "console"
# The exit status of a program ended by Ctrl+C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _use_readline() -> None:
    """Let input() read through readline where Python has it: line editing, history, and no line-length limit.

    Without it a terminal in line mode passes at most 4,095 bytes of a line and silently drops the rest.
    """
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401 - importing it is what makes input() use it


def _read_line(interactive: bool) -> str | None:
    """The next line without its newline, or None at the end of input; prompts only a terminal."""
    if interactive:
        try:
            return input(texts.CONSOLE_PROMPT)
        except EOFError:
            _write("")
            return None
    line = sys.stdin.readline()
    return line.removesuffix("\n") if line else None


def _command_answer(line: str, generator: ReplyGenerator, store: ChatStore) -> str:
    """The answer to a console command (a line starting with /)."""
    name, _, argument = line.partition(" ")
    if name == "/help":
        return texts.CONSOLE_HELP
    if name in ("/start", "/reset"):
        generator.forget(CONSOLE_CHAT_ID)
        return texts.HISTORY_CLEARED
    if name == "/context":
        turns = parse_context_turns(argument)
        if turns is None:
            return texts.CONTEXT_RANGE.format(maximum=MAX_CONTEXT_TURNS)
        style = store.preferences(CONSOLE_CHAT_ID).style
        store.set_preferences(CONSOLE_CHAT_ID, ChatPreferences(turns, style))
        return texts.CONTEXT_SET.format(turns=turns, turns_word=texts.plural(turns, texts.LAST_TURNS_WORD))
    return texts.CONSOLE_UNKNOWN_COMMAND


async def _reply(generator: ReplyGenerator, line: str) -> str:
    """The model's reply to a line, or what the bot says instead."""
    try:
        reply = await generator.reply(CONSOLE_CHAT_ID, line, CONSOLE_AUTHOR)
    except EmptyMessageError:
        return texts.EMPTY_TEXT
    except ReplyTimeoutError:
        return texts.TIMEOUT
    except BusyError:
        return texts.BUSY
    generator.remember(CONSOLE_CHAT_ID, reply)
    return reply.text or texts.FALLBACK_REPLY


def run_console(generator: ReplyGenerator, store: ChatStore) -> int:
    """Chat until /exit or the end of input (status 0) or Ctrl+C (status 130, at the prompt or while generating)."""
    interactive = sys.stdin.isatty()
    if interactive:
        _use_readline()
    generator.forget(CONSOLE_CHAT_ID)
    _write(texts.CONSOLE_GREETING)
    with asyncio.Runner() as runner:
        try:
            while (line := _read_line(interactive)) is not None:
                text = line.strip()
                if text == "/exit":
                    break
                if not text:
                    _write(texts.CONSOLE_EMPTY_LINE)
                elif text.startswith("/"):
                    _write(_command_answer(text, generator, store))
                else:
                    _write(texts.CONSOLE_REPLY.format(text=runner.run(_reply(generator, line))))
        except KeyboardInterrupt:
            # One Ctrl+C ends the chat; a second one must not break the clean-up (a generation still finishing).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _write("")
            return INTERRUPTED
    return 0
