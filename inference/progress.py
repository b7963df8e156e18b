"""A reply's text while it is generated, and its stop button: what a backend reports on its way to the event loop.

No torch and no aiogram here. A backend (in a worker thread, or on the event loop for a remote server) calls
``poll`` after each new token of a request's row; the Telegram side gets the text through ``publish`` on the
event loop and calls ``stop`` when the user presses the draft's stop button.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable

# When the text a backend was asked for had no new whole word, it is asked again after this share of the interval
# rather than at every token: decoding a row costs more than the token it waits for.
_RECHECK_SHARE = 0.25


def whole_words(text: str) -> str:
    """``text`` without its last word, which may still be growing: up to its last space ("" without one).

    ``text`` is a cleaned reply (whitespace folded, no space at either end), so what is left ends with a whole
    word, and the finished reply starts with it.
    """
    cut = text.rfind(" ")
    return text[:cut] if cut > 0 else ""


class ReplyProgress:
    """One reply's drafts and stop flag, shared by the event loop that made it and the backend that generates.

    ``publish`` gets the reply's whole words so far on the event loop, at most every ``interval`` seconds and
    only when they grew; the first comes ``interval`` after this object was made, so a reply ready sooner
    shows none. Create it on the event loop; ``poll`` may be called from any one thread at a time.
    """

    def __init__(
        self, publish: Callable[[str], None], interval: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._publish = publish
        self._interval = interval
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._next = clock() + interval
        self._shown = ""
        # A threading.Event for the worker threads that read it, an asyncio.Event for a remote stream that awaits it.
        self._stopped = threading.Event()
        self._stopped_on_loop = asyncio.Event()

    @property
    def stopped(self) -> bool:
        """Whether the user asked to stop this reply."""
        return self._stopped.is_set()

    def stop(self) -> None:
        """End this reply's generation now: its backend ends the row at its next token (call on the event loop)."""
        self._stopped.set()
        self._stopped_on_loop.set()

    async def wait_stopped(self) -> None:
        """Return once ``stop`` was called."""
        await self._stopped_on_loop.wait()

    def poll(self, text: Callable[[], str]) -> bool:
        """A backend's report after a new token of this reply: True once the reply is to stop.

        ``text()`` is the reply so far, decoded and cleaned as the finished reply will be; it is asked for only
        when a draft is due, and its whole words go to ``publish`` if they grew.
        """
        if self._stopped.is_set():
            return True
        now = self._clock()
        if now < self._next:
            return False
        visible = whole_words(text())
        if len(visible) > len(self._shown) and visible.startswith(self._shown):
            self._shown = visible
            self._next = now + self._interval
            # RuntimeError: the event loop is closed, the bot is stopping and nobody reads drafts any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._publish, visible)
        else:
            self._next = now + self._interval * _RECHECK_SHARE
        return False


async def until_stopped(work: Awaitable[None], progress: ReplyProgress) -> None:
    """Await ``work`` until it ends or the user stops the reply, whichever comes first (``work`` is cancelled then)."""
    working = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(progress.wait_stopped())
    try:
        await asyncio.wait((working, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (working, stop):
            task.cancel()
        await asyncio.gather(working, stop, return_exceptions=True)
    if not working.cancelled():
        working.result()  # the work's own error, if it failed
