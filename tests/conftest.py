"""Shared fixtures: a tiny ruDialoGPT-like model built on the spot (no hub, no shared/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
RUDIALOGPT_DIR = SHARED / "rudialogpt-small"

TINY_TEXTS = [
    "привет",
    "как дела?",
    "нормально, а у тебя?",
    "всё хорошо, спасибо",
    "что делаешь?",
    "читаю книгу",
    "какую?",
    "про море и корабли",
    "звучит интересно",
    "пойдём гулять",
    "давай завтра",
    "hello there",
    "ok 123 !?",
    "😀 эмодзи тоже бывают",
]


def build_tiny_model(
    directory: Path, seed: int = 0, n_embd: int = 32, n_layer: int = 2, n_positions: int = 128
) -> Path:
    """Write a tiny GPT-2 with a byte-level BPE tokenizer that has the ruDialoGPT speaker tokens."""
    import torch

    from training.modeling import new_model, new_tokenizer

    tokenizer = new_tokenizer(TINY_TEXTS * 4, vocab_size=400, min_frequency=1)
    torch.manual_seed(seed)
    # Untied, so a random model does not just repeat its last input token (the speaker token).
    model = new_model(
        tokenizer, n_embd=n_embd, n_layer=n_layer, n_head=2, n_positions=n_positions, tie_word_embeddings=False
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight model directory, loadable with from_pretrained."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def slow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bigger random model whose replies take a while, for load and responsiveness tests."""
    return build_tiny_model(tmp_path_factory.mktemp("slow_model"), n_embd=256, n_layer=6, n_positions=512)


@pytest.fixture
async def fake():
    """A fake Telegram Bot API server on 127.0.0.1 (tests/fake_telegram.py)."""
    from fake_telegram import FakeTelegram

    async with FakeTelegram() as server:
        yield server


@pytest.fixture(scope="session")
def real_tokenizer():
    """The real ruDialoGPT-small tokenizer from ../shared; skips when shared/ is absent."""
    if not (RUDIALOGPT_DIR / "tokenizer_config.json").is_file():
        pytest.skip("../shared/rudialogpt-small is not here")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(RUDIALOGPT_DIR)
