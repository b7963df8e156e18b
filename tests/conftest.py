"""Shared fixtures: tiny ruDialoGPT-like models built on the spot (no hub, no shared/)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from bigram import blank_bigram_model

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
    directory: Path,
    seed: int = 0,
    n_embd: int = 32,
    n_layer: int = 2,
    n_positions: int = 128,
    texts: Sequence[str] = TINY_TEXTS,
) -> Path:
    """Write a tiny GPT-2 with a byte-level BPE tokenizer, learnt from ``texts``, with the ruDialoGPT speaker tokens."""
    import torch

    from training.modeling import new_model, new_tokenizer

    tokenizer = new_tokenizer(list(texts) * 4, vocab_size=400, min_frequency=1)
    torch.manual_seed(seed)
    # Untied, so a random model does not just repeat its last input token (the speaker token).
    model = new_model(
        tokenizer, n_embd=n_embd, n_layer=n_layer, n_head=2, n_positions=n_positions, tie_word_embeddings=False
    )
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# How far the likeliest next token stands above the rest: wide enough to survive CTranslate2's int8 conversion,
# which shrank the silent model's margins about sixtyfold (it then wrote junk in two of three replies).
MARGIN = 50.0


def build_answering_model(
    directory: Path, words: int = 6, answers: Sequence[str] = (), *, endless: bool = False
) -> Path:
    """A tiny model that always answers one word, whatever the prompt and the sampling, then ends its turn.

    Its blocks add nothing, so each next token depends only on the last one (a bigram table): after the
    bot's speaker token comes a word, each of ``words`` candidates far likelier than the next (a word the
    no-repeat-n-gram rule bans gives way to the next one), and after a word comes a speaker token.
    With ``words=0`` the speaker token comes at once: a model that never has anything to say.
    ``answers`` names the candidate words instead, likeliest first (each becomes one token).
    With ``endless`` every token is followed by a word (or, where every word is banned, some other ordinary
    token), never by a special token: a model that writes words until its new-token limit.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inference.dialogue import FIRST_SPEAKER, SECOND_SPEAKER

    build_tiny_model(directory, texts=[*TINY_TEXTS, *answers * 8])  # often enough to be one token each
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory)
    bot_turn, *speakers = tokenizer.convert_tokens_to_ids([SECOND_SPEAKER, FIRST_SPEAKER, SECOND_SPEAKER])
    if answers:
        answer_ids = [tokenizer.encode(f" {word}") for word in answers]
        assert all(len(ids) == 1 for ids in answer_ids), f"each answer must be one token: {answer_ids}"
        answer_ids = [ids[0] for ids in answer_ids]
    else:
        answer_ids = [
            token_id
            for token, token_id in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
            if len(text := tokenizer.decode([token_id])) > 2 and text[0] == " " and text[1:].isalpha()
        ][:words]
        assert len(answer_ids) == words, "the tiny tokenizer has too few whole words"
    # What follows the bot's speaker token: the words, likeliest first, or (a silent model) the end of the turn.
    starts = answer_ids or speakers
    with torch.no_grad():
        blank_bigram_model(model)
        # Dimension 0 marks "the bot's turn starts", dimension 1 "a word was said".
        model.transformer.wte.weight[bot_turn, 0] = 1.0
        model.transformer.wte.weight[answer_ids, 1] = 1.0
        for rank, token_id in enumerate(starts):
            model.lm_head.weight[token_id, 0] = MARGIN * (12.0 - 2.0 * rank)
        if endless:
            model.transformer.wte.weight[:, 1] = 1.0
            model.transformer.wte.weight[bot_turn, 1] = 0.0
            for rank, token_id in enumerate(answer_ids):
                model.lm_head.weight[token_id, 1] = MARGIN * (12.0 - 0.5 * rank)
            model.lm_head.weight[[*speakers, *tokenizer.all_special_ids], 1] = MARGIN * -20.0
        else:
            model.lm_head.weight[speakers, 1] = MARGIN * torch.tensor([12.0, 10.0])
    model.save_pretrained(directory)
    return directory


# An added token of the real ruDialoGPT tokenizer that is neither a speaker token nor special: its text cuts a reply.
CUTTING_TOKEN = "<FIRST_SPEAKER>"


def build_cutting_model(directory: Path) -> Path:
    """A tiny model whose reply is a word, then CUTTING_TOKEN, then words and CUTTING_TOKEN in turn to its limit.

    The token's text cuts the reply (PromptCodec.decode), so every reply is that first word, however long the
    row runs. A bigram table as in build_answering_model, with margins that survive any conversion.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from inference.dialogue import SECOND_SPEAKER

    build_tiny_model(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.add_tokens([CUTTING_TOKEN])
    model = AutoModelForCausalLM.from_pretrained(directory)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    bot_turn, cut = tokenizer.convert_tokens_to_ids([SECOND_SPEAKER, CUTTING_TOKEN])
    first, then = (tokenizer.encode(f" {word}")[0] for word in ("привет", "море"))
    with torch.no_grad():
        blank_bigram_model(model)
        # Dimension 0: the bot's turn starts; 1: a word was said; 2: the cutting token was said.
        model.transformer.wte.weight[bot_turn, 0] = 1.0
        model.transformer.wte.weight[[first, then], 1] = 1.0
        model.transformer.wte.weight[cut, 2] = 1.0
        model.lm_head.weight[first, 0] = MARGIN * 12.0
        model.lm_head.weight[cut, 1] = MARGIN * 12.0
        model.lm_head.weight[then, 2] = MARGIN * 12.0
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def cutting_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose reply is one word, then a token whose text cuts the reply, then more to its limit."""
    return build_cutting_model(tmp_path_factory.mktemp("cutting_model"))


@pytest.fixture(scope="session")
def answering_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that always answers (one word), so checks of stored replies always run."""
    return build_answering_model(tmp_path_factory.mktemp("answering_model"))


@pytest.fixture(scope="session")
def swearing_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose every answer is one obscene word ("сука")."""
    return build_answering_model(tmp_path_factory.mktemp("swearing_model"), answers=["сука", "блядь"])


@pytest.fixture(scope="session")
def answering_backend(answering_model_dir: Path):
    """The always-answering model loaded once, with the transformers backend on the CPU in float32."""
    from inference.transformers_backend import TransformersBackend

    return TransformersBackend(str(answering_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def endless_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that never ends its turn: its replies are words up to their new-token limit."""
    return build_answering_model(tmp_path_factory.mktemp("endless_model"), words=20, endless=True)


@pytest.fixture(scope="session")
def silent_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that ends its turn at once: every reply is empty."""
    return build_answering_model(tmp_path_factory.mktemp("silent_model"), words=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight model directory, loadable with from_pretrained."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir: Path):
    """The tiny model loaded once for the session with the transformers backend, on the CPU in float32."""
    from inference.transformers_backend import TransformersBackend

    return TransformersBackend(str(tiny_model_dir), device="cpu", dtype="float32")


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


@pytest.fixture
def make_harness(tmp_path: Path):
    """Builds Harness instances (each with its own database) and closes every one after the test, pass or fail."""
    from harness import Harness

    made: list[Harness] = []

    def make(backend, **overrides: object) -> Harness:
        folder = tmp_path / f"harness-{len(made)}"
        folder.mkdir()
        made.append(Harness(backend, folder, **overrides))
        return made[-1]

    yield make
    for harness in made:
        harness.close()
