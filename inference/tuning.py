"""The serving defaults each engine and device was measured best with, for MAX_BATCH and BATCH_WINDOW_MS left unset.

The figures behind them are in the README ("Serving speed"); a setting that is set always wins.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tuning:
    """How the batching pool serves one engine on one kind of device."""

    max_batch: int
    batch_window_ms: float


MEASURED: dict[tuple[str, str], Tuning] = {
    ("ctranslate2", "cpu"): Tuning(max_batch=32, batch_window_ms=10.0),
    ("transformers", "cpu"): Tuning(max_batch=16, batch_window_ms=10.0),
}
# Engines and devices not measured yet (GPUs): the values the bot used everywhere before.
UNMEASURED = Tuning(max_batch=16, batch_window_ms=10.0)


def tuning_for(engine: str, device_type: str) -> Tuning:
    """The measured defaults of ``engine`` (ctranslate2, transformers) on a device of ``device_type`` (cpu, cuda)."""
    return MEASURED.get((engine, device_type), UNMEASURED)
