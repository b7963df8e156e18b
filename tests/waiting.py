"""Waiting in tests for a condition, never for a guessed time: slow machines only make the wait longer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

# How long a test waits for something that must happen before it calls it a hang; far past any slow machine.
PATIENCE = 60.0


async def until(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    """Check ``condition`` every 10 ms until it holds; an AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(0.01)


def pass_gate(gate: threading.Event, timeout: float = PATIENCE) -> None:
    """Hold a worker thread until the test opens ``gate``; one left shut fails loudly, never opens by itself."""
    if not gate.wait(timeout):
        raise TimeoutError(f"the test did not open the gate within {timeout:g} s")
