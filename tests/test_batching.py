"""The batching pool: coalescing, limits, keys, errors and a bounded queue."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Sequence

import pytest
from waiting import pass_gate

from errors import BusyError
from inference.batching import BatchingPool


class Recorder:
    """A batch function that records each batch and can be held open (until the test opens ``gate``).

    The tests below hold it while they queue more items; their short sleeps only let the event loop run the
    pool's own steps (no I/O, no thread has to get anywhere first), so they order things on any machine.
    """

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.threads: set[str] = set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        pass_gate(self.gate)
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        return [item * 10 for item in items]


async def test_requests_that_arrive_together_share_one_batch() -> None:
    recorder = Recorder()
    pool = BatchingPool(recorder, workers=1, max_batch=8, window=0.02, max_pending=100)
    results = await asyncio.gather(*(pool.submit(i) for i in range(5)))
    assert results == [0, 10, 20, 30, 40]
    assert recorder.batches == [[0, 1, 2, 3, 4]]
    assert all(name.startswith("generate") for name in recorder.threads), "batches run in the pool, off the loop"
    pool.shutdown()


async def test_batches_are_capped_and_queued_requests_leave_together() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    pool = BatchingPool(recorder, workers=1, max_batch=3, window=0.0, max_pending=100)
    first = asyncio.ensure_future(pool.submit(0))
    await asyncio.sleep(0.05)  # the worker is now busy with [0]
    rest = [asyncio.ensure_future(pool.submit(i)) for i in range(1, 8)]
    await asyncio.sleep(0.05)
    recorder.gate.set()
    await asyncio.gather(first, *rest)
    assert recorder.batches == [[0], [1, 2, 3], [4, 5, 6], [7]]
    pool.shutdown()


async def test_a_full_batch_leaves_without_waiting_out_the_window() -> None:
    recorder = Recorder()
    pool = BatchingPool(recorder, workers=1, max_batch=3, window=1000.0, max_pending=100)
    # A lone request would wait 1000 s for company; three fill a batch and leave at once.
    results = await asyncio.wait_for(asyncio.gather(*(pool.submit(i) for i in range(3))), timeout=30)
    assert results == [0, 10, 20]
    assert recorder.batches == [[0, 1, 2]]
    pool.shutdown()


async def test_requests_queued_behind_a_busy_worker_leave_as_soon_as_it_frees_with_no_window_of_their_own() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    pool = BatchingPool(recorder, workers=1, max_batch=2, window=1000.0, max_pending=100)
    first = [asyncio.ensure_future(pool.submit(i)) for i in (0, 1)]  # a full batch: the worker takes it at once
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(pool.submit(2))  # comes while the worker is busy
    await asyncio.sleep(0.01)
    recorder.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*first, queued), timeout=30) == [0, 10, 20]
    assert recorder.batches == [[0, 1], [2]]
    pool.shutdown()


async def test_only_items_with_the_same_key_share_a_batch() -> None:
    recorder = Recorder()
    pool = BatchingPool(recorder, workers=1, max_batch=8, window=0.02, max_pending=100)
    await asyncio.gather(pool.submit(1, "calm"), pool.submit(2, "lively"), pool.submit(3, "calm"))
    assert sorted(recorder.batches) == [[1, 3], [2]]
    pool.shutdown()


async def test_a_full_queue_answers_busy_at_once() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    pool = BatchingPool(recorder, workers=1, max_batch=2, window=0.0, max_pending=3)
    waiting = [asyncio.ensure_future(pool.submit(i)) for i in range(3)]
    await asyncio.sleep(0.02)
    assert pool.pending == 3
    with pytest.raises(BusyError):
        await asyncio.wait_for(pool.submit(99), timeout=0.5)
    recorder.gate.set()
    assert await asyncio.gather(*waiting) == [0, 10, 20]
    assert pool.pending == 0
    pool.shutdown()


async def test_an_error_in_the_batch_reaches_every_caller() -> None:
    def broken(items: Sequence[int]) -> list[int]:
        raise RuntimeError("model exploded")

    pool = BatchingPool(broken, workers=1, max_batch=4, window=0.01, max_pending=10)
    results = await asyncio.gather(pool.submit(1), pool.submit(2), return_exceptions=True)
    assert [str(r) for r in results] == ["model exploded", "model exploded"]
    assert pool.pending == 0
    pool.shutdown()


async def test_a_caller_that_gave_up_is_not_generated_for() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    pool = BatchingPool(recorder, workers=1, max_batch=4, window=0.0, max_pending=10)
    busy = asyncio.ensure_future(pool.submit(0))
    await asyncio.sleep(0.02)
    abandoned = asyncio.ensure_future(pool.submit(1))
    kept = asyncio.ensure_future(pool.submit(2))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    recorder.gate.set()
    assert await asyncio.gather(busy, kept) == [0, 20]
    assert recorder.batches == [[0], [2]]
    pool.shutdown()


async def test_interactive_items_leave_before_background_ones_and_are_never_refused_for_them() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    pool = BatchingPool(recorder, workers=1, max_batch=2, window=0.0, max_pending=2)
    running = asyncio.ensure_future(pool.submit(0, background=True))
    await asyncio.sleep(0.02)  # the worker is busy with a background batch
    background = [asyncio.ensure_future(pool.submit(i, background=True)) for i in range(1, 7)]
    await asyncio.sleep(0.01)
    interactive = [asyncio.ensure_future(pool.submit(i)) for i in (100, 101)]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    await asyncio.gather(running, *background, *interactive)
    assert recorder.batches[:2] == [[0], [100, 101]], "chat waits for the running batch only"
    assert sorted(itertools.chain(*recorder.batches[2:])) == [1, 2, 3, 4, 5, 6]
    pool.shutdown()
