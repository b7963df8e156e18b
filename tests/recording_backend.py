"""A backend that hands every batch to a real one and keeps the requests: what the generator asked for."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

from inference.backend import Backend, Outcome, Request
from inference.progress import ReplyProgress


class RecordingBackend:
    """A real backend that also records every batch it generates.

    ``gate`` (set) can be cleared to hold generation back; ``fail`` makes generation raise it instead;
    ``progress_wrapper`` stands in for each request's progress (to watch or pace the worker's reports).
    """

    def __init__(self, backend: Backend, fail: Exception | None = None) -> None:
        self.backend = backend
        self.batches: list[list[Request]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = fail
        self.progress_wrapper: Callable[[ReplyProgress], object] | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    @property
    def requests(self) -> list[Request]:
        """Every request generated, in order."""
        return [request for batch in self.batches for request in batch]

    def generate(self, requests: Sequence[Request]) -> list[Outcome]:
        self.gate.wait(10)
        self.batches.append(list(requests))
        if self.fail is not None:
            raise self.fail
        if self.progress_wrapper is not None:
            requests = [replace(r, progress=self.progress_wrapper(r.progress)) if r.progress else r for r in requests]
        return self.backend.generate(requests)
