"""bench/profanity.py still runs: the filter's figures, and avoid against allow on a small swearing model."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from bench.profanity import OBSCENE_WORD, ORDINARY_WORD, avoid_cost, build_swearing_model, main
from settings import Settings


def test_the_filter_figures_are_printed(capsys) -> None:
    main([])
    out = capsys.readouterr().out
    assert re.search(r"recall: \d+ of \d+ obscene forms \(\d+\.\d%\)", out)
    assert "false positives: 0 of" in out
    assert re.search(r"mask\(\) per reply .*: \d+ µs with no word cached, \d+ µs with every word cached", out)


def test_avoid_against_allow_runs_on_a_swearing_model(tmp_path: Path, capsys) -> None:
    model = build_swearing_model(tmp_path / "model", n_layer=1, n_embd=64)
    base = Settings(model_path=str(model), backend="transformers", device="cpu", db_path=str(tmp_path / "b.sqlite3"))
    runs = asyncio.run(avoid_cost(base, chats=4, rounds=2, lag_tick=0.01))
    out = capsys.readouterr().out
    assert [(mode, run.replies, run.errors) for mode, run in runs.items()] == [("allow", 8, 0), ("avoid", 8, 0)]
    assert re.search(r"avoid/allow: throughput \d+\.\d\dx, p95 latency \d+\.\d\dx", out)
    assert f"every reply '{OBSCENE_WORD}' or '{ORDINARY_WORD}'" in out
    assert re.search(r"avoid .* replies that swore  0\.0%", out), "avoid never lets a swearing reply out"
