"""notebooks/model.ipynb runs top to bottom with `jupyter nbconvert --execute` on a tiny setting."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_TEXTS

NOTEBOOK = ROOT / "notebooks" / "model.ipynb"


@pytest.mark.slow
def test_the_notebook_trains_saves_and_answers(tmp_path: Path) -> None:
    pytest.importorskip("nbconvert", reason="pip install nbconvert nbclient ipykernel to run the notebook")
    pytest.importorskip("ipykernel", reason="pip install nbconvert nbclient ipykernel to run the notebook")
    data = tmp_path / "chat.csv"
    with data.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["context_3", "context_2", "context_1", "response"])
        writer.writerows(("", "", question, answer) for question, answer in itertools.pairwise(TINY_TEXTS))
    toasts = tmp_path / "toasts.csv"
    with toasts.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["topic", "text"])
        writer.writerows((holiday, text) for holiday in ("Новый год", "Свадьба") for text in TINY_TEXTS)
    out, toast_out = tmp_path / "model", tmp_path / "toast_model"
    env = {**os.environ, "DATA": str(data), "OUT": str(out), "FROM_SCRATCH": "1", "MAX_STEPS": "3"}
    env |= {"TOAST_DATA": str(toasts), "TOAST_OUT": str(toast_out)}
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", str(NOTEBOOK)]
    command += ["--output-dir", str(tmp_path), "--output", "executed", "--ExecutePreprocessor.timeout=240"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    executed = json.loads((tmp_path / "executed.ipynb").read_text(encoding="utf-8"))
    printed = "".join(
        "".join(output.get("text", ""))
        for cell in executed["cells"]
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )
    assert f"{len(TINY_TEXTS) - 1} dialogues" in printed
    assert "held-out loss" in printed and "perplexity" in printed
    assert printed.count("->") >= 3 + 3 + 2  # three data rows, three replies, two toasts
    # Every reply is what the bot would say: its fallback phrase where the model's text is cleaned away.
    replies = [line.split("->", 1)[1] for line in printed.splitlines() if "->" in line]
    assert all(reply.strip() for reply in replies), replies
    assert "toast model: held-out loss" in printed and "toast for день рождения ->" in printed
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    assert json.loads((toast_out / "generation_config.json").read_text())["task"] == "toast"
    assert not (ROOT / "checkpoints").exists() or not any((ROOT / "checkpoints").iterdir())
