"""The demo model shipped in saved_model/: small, the bot's default, and it answers in Russian."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from botprocess import bot_env, main_command
from conftest import ROOT
from transformers import GenerationConfig

from inference.backend import Request
from inference.dialogue import reply_ids
from inference.transformers_backend import TransformersBackend
from settings import Settings

DEMO = ROOT / "saved_model"
PROMPTS = [("привет",), ("как дела?",), ("что делаешь вечером?",), ("пойдём гулять",), ("ты кто?",)] * 2
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
LETTER = re.compile(r"[^\W\d_]")

pytestmark = pytest.mark.skipif(not (DEMO / "model.safetensors").is_file(), reason="no demo model in saved_model/")


@pytest.fixture(scope="module")
def demo() -> TransformersBackend:
    return TransformersBackend(str(DEMO), device="cpu", dtype="float32")


def russian_share(text: str) -> float:
    letters = LETTER.findall(text)
    return sum(bool(CYRILLIC.match(letter)) for letter in letters) / max(1, len(letters))


def test_the_demo_model_is_at_most_25_mb() -> None:
    size = sum(path.stat().st_size for path in DEMO.iterdir())
    assert 1_000_000 < size <= 25_000_000


def test_it_is_the_default_model_and_it_stops_at_the_speaker_token(demo: TransformersBackend) -> None:
    assert ROOT / Settings().model_path == DEMO
    saved = GenerationConfig.from_pretrained(DEMO)
    assert set(saved.eos_token_id) == set(demo.tokens.speakers) and saved.pad_token_id == demo.tokens.pad
    torch.manual_seed(0)
    rows, _ = demo.generate_ids([Request(p, time.monotonic() + 60) for p in PROMPTS])
    stopped = [row for row in rows if len(reply_ids(row, demo.tokens)) < len(row)]
    assert len(stopped) >= len(rows) // 2, "the model should have learned to close its replies"


def test_the_demo_model_answers_in_russian(demo: TransformersBackend) -> None:
    torch.manual_seed(0)
    replies = [outcome.text for outcome in demo.generate([Request(p, time.monotonic() + 60) for p in PROMPTS])]
    assert sum(bool(reply) for reply in replies) >= len(replies) - 1
    assert russian_share(" ".join(replies)) > 0.9, replies


def test_the_console_chat_answers_in_russian_with_the_demo_model(tmp_path: Path) -> None:
    done = subprocess.run(
        main_command(tmp_path, "--console"),
        cwd=tmp_path,
        env=bot_env(model_path=DEMO, db_path=tmp_path / "db.sqlite3"),
        input="привет\nкак дела?\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers = [answer.strip() for answer in done.stdout.split("бот> ")[1:]]
    assert len(answers) == 2 and all(answers)
    assert russian_share(" ".join(answers)) > 0.9, answers
