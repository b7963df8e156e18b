"""Coalesce requests that arrive together into batches, run in a bounded thread pool.

Pure asyncio: the batch function (a batched ``generate()``) runs in the pool through
``loop.run_in_executor``, so the event loop never waits on the model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

from errors import BusyError

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Item, Result]):
    item: Item
    key: Hashable
    background: bool
    # When it leaves at the latest: a window after it came while a worker was idle, at once if it had to queue.
    due: float
    future: asyncio.Future[Result] = field(repr=False)


class BatchingPool(Generic[Item, Result]):
    """Runs ``run_batch(items) -> results`` in at most ``workers`` threads, ``max_batch`` items a call.

    A request that comes while a worker is free waits at most ``window`` seconds for company (none once
    ``max_batch`` requests wait); requests that queued while every worker was busy leave together as soon as
    one frees, before the finished batch's callers hear back: a worker never waits for the event loop to deal
    with the replies it just made.
    Only items with the same key share a batch (e.g. the same sampling settings). More than ``max_pending``
    waiting or running items raise BusyError at once, so memory stays bounded under a flood.

    Background items (scheduled work such as the daily horoscopes) leave only when no interactive
    item waits, and don't count towards ``max_pending``: their caller bounds how many it submits.
    """

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        workers: int,
        max_batch: int,
        window: float,
        max_pending: int,
    ) -> None:
        self._run_batch = run_batch
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="generate")
        self._idle_workers = workers
        self._max_batch = max_batch
        self._window = window
        self._max_pending = max_pending
        self._queue: list[_Pending[Item, Result]] = []
        self._in_flight: list[_Pending[Item, Result]] = []
        self._dispatch_task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Items queued or being generated now."""
        return len(self._queue) + len(self._in_flight)

    async def submit(self, item: Item, key: Hashable = None, *, background: bool = False) -> Result:
        """Queue one item and wait for its result; raises BusyError when interactive items fill the queue."""
        if not background and self._interactive() >= self._max_pending:
            raise BusyError(f"{self.pending} requests pending")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        due = loop.time() + (self._window if self._idle_workers else 0.0)
        self._queue.append(_Pending(item, key, background, due, future))
        self._wake()
        return await future

    def _interactive(self) -> int:
        """Interactive items queued or being generated."""
        return sum(not p.background for p in (*self._queue, *self._in_flight))

    def shutdown(self) -> None:
        """Stop accepting work and let running batches finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _wake(self) -> None:
        if self._dispatch_task is None and self._idle_workers and self._queue:
            self._dispatch_task = asyncio.create_task(self._dispatch())

    def _wait_left(self) -> float:
        """Seconds until a queued request is due (none once a full batch waits)."""
        if len(self._queue) >= self._max_batch:
            return 0.0
        return min(pending.due for pending in self._queue) - asyncio.get_running_loop().time()

    async def _dispatch(self) -> None:
        try:
            while self._idle_workers and self._queue:
                wait = self._wait_left()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                self._start_due()
        finally:
            self._dispatch_task = None

    def _start_due(self) -> None:
        """Start a batch on each idle worker while requests are due (their window is over, or a batch is full)."""
        while self._idle_workers and self._queue and self._wait_left() <= 0:
            batch = self._take_batch()
            if not batch:
                continue
            self._idle_workers -= 1
            self._in_flight += batch
            loop = asyncio.get_running_loop()
            generated = loop.run_in_executor(self._executor, self._run_batch, [p.item for p in batch])
            generated.add_done_callback(partial(self._finish, batch))

    def _take_batch(self) -> list[_Pending[Item, Result]]:
        # Requests whose callers gave up are dropped here rather than generated for nobody.
        self._queue = [pending for pending in self._queue if not pending.future.done()]
        if not self._queue:
            return []
        # Interactive items first; within each kind, arrival order.
        ordered = sorted(self._queue, key=lambda pending: pending.background)
        key = ordered[0].key
        batch = [pending for pending in ordered if pending.key == key][: self._max_batch]
        taken = {id(pending) for pending in batch}
        self._queue = [pending for pending in self._queue if id(pending) not in taken]
        return batch

    def _finish(self, batch: list[_Pending[Item, Result]], generated: asyncio.Future[Sequence[Result]]) -> None:
        """A batch is done: free its worker and start what is due on it, then hand the results to their callers."""
        taken = {id(pending) for pending in batch}
        self._in_flight = [pending for pending in self._in_flight if id(pending) not in taken]
        self._idle_workers += 1
        self._start_due()
        waiting = [pending for pending in batch if not pending.future.done()]
        if generated.cancelled():  # the pool shut down before the batch ran
            for pending in waiting:
                pending.future.cancel()
        elif (error := generated.exception()) is not None:
            for pending in waiting:
                pending.future.set_exception(error)
        else:
            for pending, result in zip(batch, generated.result(), strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)
        self._wake()


class ConcurrentRunner(Generic[Item, Result]):
    """Runs ``run_one(item)`` coroutines on the event loop itself, for a remote server that batches on its own.

    The same bound as the pool: more than ``max_pending`` interactive items at once raise BusyError.
    """

    def __init__(self, run_one: Callable[[Item], Awaitable[Result]], *, max_pending: int) -> None:
        self._run_one = run_one
        self._max_pending = max_pending
        self._interactive = 0
        self._background = 0

    @property
    def pending(self) -> int:
        """Items being generated now."""
        return self._interactive + self._background

    async def submit(self, item: Item, key: Hashable = None, *, background: bool = False) -> Result:
        """Generate one item; raises BusyError when ``max_pending`` interactive items are under way."""
        if not background and self._interactive >= self._max_pending:
            raise BusyError(f"{self.pending} requests pending")
        if background:
            self._background += 1
        else:
            self._interactive += 1
        try:
            return await self._run_one(item)
        finally:
            if background:
                self._background -= 1
            else:
                self._interactive -= 1

    def shutdown(self) -> None:
        """Nothing to stop: the requests run on the event loop."""
