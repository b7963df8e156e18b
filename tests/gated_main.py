"""``python main.py`` with its generation held at a gate the test opens: in-flight work slow by construction.

``python tests/gated_main.py GATE [main.py options]`` runs the bot as ``main.py`` does, except that after the
warm-up each batch the generation pool runs waits in its worker thread until the file GATE exists or the
batch's earliest deadline (GENERATION_TIMEOUT) passes, logging HELD when it starts to wait. So a test knows
a reply is being generated, and stays so until it creates GATE, without guessing how fast the machine is.
Once the bot's event loop has ended, the pool's shutdown opens the gate: nobody awaits those batches any more.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Logged by the bot process when a batch starts to wait at the gate.
HELD = "a batch waits at the gate"
logger = logging.getLogger("tests.gate")
_POLL_SECONDS = 0.02


class Gate:
    """Lets batches through while its file exists; holds none before ``arm`` or after ``open_for_good``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._armed = False
        self._opened = threading.Event()

    def arm(self) -> None:
        """Hold the batches from now on."""
        self._armed = True

    def open_for_good(self) -> None:
        """Let every held batch and every later one through."""
        self._opened.set()

    def wait(self, deadline: float, rows: int) -> None:
        """Block until the file exists, the gate is opened for good, or ``deadline`` (time.monotonic) passes."""
        if not self._armed or self._passable():
            return
        logger.info("%s (%d rows)", HELD, rows)
        while not self._passable() and time.monotonic() < deadline:
            self._opened.wait(_POLL_SECONDS)
        logger.info("the gate let a batch through")

    def _passable(self) -> bool:
        return self._opened.is_set() or self._path.exists()


def install(gate: Gate) -> None:
    """Put the gate in front of ReplyGenerator's batch function, armed once the warm-up is done."""
    from generator import ReplyGenerator
    from inference.backend import Outcome, Request

    generate, warm_up, shutdown = ReplyGenerator._generate, ReplyGenerator.warm_up, ReplyGenerator.shutdown

    def held_generate(self: ReplyGenerator, requests: Sequence[Request]) -> list[Outcome]:
        gate.wait(min(request.deadline for request in requests), len(requests))
        return generate(self, list(requests))

    def warm_up_then_arm(self: ReplyGenerator) -> None:
        warm_up(self)
        gate.arm()

    def open_then_shut_down(self: ReplyGenerator) -> None:
        gate.open_for_good()
        shutdown(self)

    ReplyGenerator._generate = held_generate  # type: ignore[method-assign]
    ReplyGenerator.warm_up = warm_up_then_arm  # type: ignore[method-assign]
    ReplyGenerator.shutdown = open_then_shut_down  # type: ignore[method-assign]


if __name__ == "__main__":
    install(Gate(Path(sys.argv[1])))
    import main

    sys.exit(main.main(sys.argv[2:]))
