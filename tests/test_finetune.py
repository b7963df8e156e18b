"""The fine-tuning pipeline: CSV reading, example building, a tiny training run, resuming, saving, the CLI."""

from __future__ import annotations

import csv
import json
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from conftest import RUDIALOGPT_DIR, SHARED, TINY_TEXTS
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

import train
from inference.dialogue import FIRST_SPEAKER, SECOND_SPEAKER, SpecialTokens, build_prompt
from inference.sampling import MODEL_CARD
from training import data, formats, loop, modeling
from training.data import IGNORE_INDEX
from training.formats import Dialogue, InputError
from training.loop import TrainSettings

HEADER = ("context_3", "context_2", "context_1", "response")
# A small chat the tiny model can learn something of: sliding windows over a dialogue, twice.
DIALOGUE = [text for text in TINY_TEXTS if not text.startswith(("hello", "ok", "😀"))] * 2
TINY_MODEL = {"vocab_size": 300, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 128}


def write_csv(path: Path, rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def chat_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for index in range(1, len(DIALOGUE)):
        context = DIALOGUE[max(0, index - 3) : index]
        rows.append((*[""] * (3 - len(context)), *context, DIALOGUE[index]))
    return rows


def tiny_settings(tmp_path: Path, **overrides: object) -> TrainSettings:
    values = {
        "data": write_csv(tmp_path / "chat.csv", chat_rows()),
        "out": tmp_path / "model",
        "from_scratch": True,
        "max_steps": 40,
        "batch_size": 4,
        "learning_rate": 1e-2,
        "val_fraction": 0.2,
        "checkpoint_dir": tmp_path / "checkpoint",
        "progress": False,
        **TINY_MODEL,
    }
    return TrainSettings(**{**values, **overrides})


@pytest.fixture(scope="module")
def tokenizer():
    return modeling.new_tokenizer(DIALOGUE, vocab_size=300, min_frequency=1)


@pytest.fixture(scope="module")
def tokens(tokenizer) -> SpecialTokens:
    return SpecialTokens.from_tokenizer(tokenizer)


# --- reading the CSV ----------------------------------------------------------------------------


def test_columns_in_any_order_empty_cells_and_skipped_rows(tmp_path: Path) -> None:
    header = ("response", "extra", "context_1", "context_3", "context_2")
    rows = [
        ("ответ", "x", "вопрос", "раз", "два"),
        ("только ответ", "", "", "", ""),
        ("", "", "вопрос без ответа", "", ""),
        # A gap: context_2 is empty, so context_3 is not part of this dialogue.
        ("ответ 2", "", "вопрос 2", "далёкое", ""),
        ("  пробелы  ", "", "  тоже  ", "", ""),
    ]
    dialogues, skipped = formats.read_dialogues(write_csv(tmp_path / "chat.csv", rows, header))
    assert skipped == 2
    assert dialogues == [
        Dialogue(("раз", "два", "вопрос"), "ответ"),
        Dialogue(("вопрос 2",), "ответ 2"),
        Dialogue(("тоже",), "пробелы"),
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        (b"", "empty file"),
        (b"context_1,response\na,b\n", "no column context_3, context_2"),
        (b"context_3,context_2,context_1,response\n,,a,b\n,,a,b,c\n", "row 2 (line 3) has 5 fields"),
        (b"context_3,context_2,context_1,response\n,,a\n", "row 1 (line 2) has 3 fields"),
        (b"context_3,context_2,context_1,response\n,,\xff\xfe,b\n", "not UTF-8"),
        (b"context_3,context_2,context_1,response\n,,,b\n", "no row has both context_1 and response (1 rows"),
    ],
)
def test_bad_csv_is_one_clear_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture, content, expected) -> None:
    path = tmp_path / "chat.csv"
    if content is not None:
        path.write_bytes(content)
    assert train.main(["--data", str(path), "--out", str(tmp_path / "out"), "--from-scratch"]) == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1
    assert str(path) in error[0] and expected in error[0]


def test_split_is_seeded_disjoint_and_complete() -> None:
    dialogues = [Dialogue((str(i),), str(i)) for i in range(50)]
    train_part, val_part = data.split_dialogues(dialogues, 0.1, seed=1)
    assert len(val_part) == 5 and sorted(train_part + val_part, key=lambda d: int(d.response)) == dialogues
    assert data.split_dialogues(dialogues, 0.1, seed=1) == (train_part, val_part)
    assert data.split_dialogues(dialogues, 0.1, seed=2)[1] != val_part
    assert len(data.split_dialogues(dialogues[:2], 0.01, seed=0)[1]) == 1
    with pytest.raises(InputError):
        data.split_dialogues(dialogues[:1], 0.1, seed=0)


# --- examples -----------------------------------------------------------------------------------


def test_new_tokenizer_is_laid_out_like_rudialogpt(tokenizer) -> None:
    assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id == 0
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id < len(tokenizer)
    first, second = (tokenizer.convert_tokens_to_ids(t) for t in (FIRST_SPEAKER, SECOND_SPEAKER))
    ids = tokenizer.encode(f"{FIRST_SPEAKER} привет {SECOND_SPEAKER}", add_special_tokens=False)
    assert ids[0] == first and ids[-1] == second and len(tokenizer) == second + 1
    assert tokenizer.decode(tokenizer.encode(" всё хорошо, спасибо 😀 ", add_special_tokens=False)) == (
        " всё хорошо, спасибо 😀 "
    )


def test_example_is_the_bots_prompt_then_the_reply_closed_by_the_first_speaker(tokenizer, tokens) -> None:
    dialogue = Dialogue(("привет", "как дела?", "что делаешь?"), "читаю книгу")
    example = data.build_example(tokenizer, tokens, dialogue, max_length=128)
    prompt = build_prompt(tokenizer, tokens, list(dialogue.context), max_turns=3, max_length=128)
    assert example.input_ids[: len(prompt)] == tuple(prompt)
    assert tokenizer.decode(example.input_ids) == (
        f"{FIRST_SPEAKER} привет {SECOND_SPEAKER} как дела? {FIRST_SPEAKER} что делаешь? "
        f"{SECOND_SPEAKER} читаю книгу {FIRST_SPEAKER}"
    )
    speakers = [i for i in example.input_ids if i in tokens.speakers]
    assert speakers == [tokens.first, tokens.second, tokens.first, tokens.second, tokens.first]
    # Loss only on the reply and its closing token.
    assert example.labels[: len(prompt)] == (IGNORE_INDEX,) * len(prompt)
    assert example.labels[len(prompt) :] == example.input_ids[len(prompt) :]
    assert example.labels[-1] == tokens.first
    assert tokenizer.decode(example.input_ids[len(prompt) : -1]) == " читаю книгу "


def test_long_dialogues_lose_the_oldest_context_first(tokenizer, tokens) -> None:
    old, middle, new = "пойдём гулять " * 10, "давай завтра " * 3, "как дела?"
    dialogue = Dialogue((old, middle, new), "звучит интересно")
    full = data.build_example(tokenizer, tokens, dialogue, max_length=1000)
    cut = data.build_example(tokenizer, tokens, dialogue, max_length=len(full.input_ids) - 5)
    assert len(cut.input_ids) <= len(full.input_ids) - 5
    text = tokenizer.decode(cut.input_ids)
    assert text.endswith(f"{FIRST_SPEAKER} как дела? {SECOND_SPEAKER} звучит интересно {FIRST_SPEAKER}")
    assert "пойдём" not in text and "давай завтра" in text
    # The newest turn alone too long: cut from its left, the reply stays whole.
    reply = sum(label != IGNORE_INDEX for label in full.labels)
    tight = data.build_example(tokenizer, tokens, Dialogue((old,), "звучит интересно"), max_length=reply + 4)
    assert len(tight.input_ids) == reply + 4
    assert tight.input_ids[0] == tokens.first and tight.input_ids[3] == tokens.second
    assert tokenizer.decode(tight.input_ids).endswith(f" звучит интересно {FIRST_SPEAKER}")
    # A reply that leaves no room for any context is dropped, not cut.
    assert data.build_example(tokenizer, tokens, dialogue, max_length=reply + 2) is None


def test_special_token_texts_never_reach_the_model(tokenizer, tokens) -> None:
    dialogue = Dialogue(("привет <|endoftext|>", f"{SECOND_SPEAKER}"), f"ответ {FIRST_SPEAKER}<pad>")
    example = data.build_example(tokenizer, tokens, dialogue, max_length=64)
    # The second context turn is empty once cleaned, so only the newest turns before it remain: none.
    assert example is None
    example = data.build_example(tokenizer, tokens, Dialogue(("привет <|endoftext|>",), "ответ<pad>"), 64)
    assert tokenizer.eos_token_id not in example.input_ids and tokens.pad not in example.input_ids
    assert tokenizer.decode(example.input_ids) == f"{FIRST_SPEAKER} привет {SECOND_SPEAKER} ответ {FIRST_SPEAKER}"


def test_examples_with_the_real_tokenizer(real_tokenizer) -> None:
    tokens = SpecialTokens.from_tokenizer(real_tokenizer)
    example = data.build_example(real_tokenizer, tokens, Dialogue(("привет <|endoftext|>",), "здорово"), 64)
    assert example.input_ids[0] == real_tokenizer.convert_tokens_to_ids(FIRST_SPEAKER)
    assert example.input_ids[-1] == tokens.first and tokens.second in example.input_ids
    # The saved tokenizer's <|endoftext|> is past the 50261 embeddings: it must never appear.
    assert max(example.input_ids) < 50261


# --- training -----------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_the_bot_loads_the_result(tmp_path: Path) -> None:
    from inference.backend import Request
    from inference.transformers_backend import TransformersBackend

    result = loop.run(tiny_settings(tmp_path))
    assert result.after.loss < result.before.loss - 1.0
    assert result.val_examples > 0 and result.train_examples > result.val_examples
    assert not (tmp_path / "checkpoint").exists(), "the checkpoint is removed once the model is saved"

    model = TransformersBackend(str(tmp_path / "model"), device="cpu", dtype="float32")
    greedy = GenerationConfig(
        do_sample=False, max_new_tokens=20, eos_token_id=list(model.tokens.speakers), pad_token_id=model.tokens.pad
    )
    outcomes = model.generate([Request(("привет",), time.monotonic() + 60)], greedy)
    assert outcomes[0].text and not outcomes[0].timed_out
    rows, _ = model.generate_ids([Request(("как дела?",), time.monotonic() + 60)], greedy)
    assert set(rows[0]) & set(model.tokens.speakers), "the model learned to close its reply"


def test_saved_configs_stop_at_the_speakers_with_the_model_card_sampling(tmp_path: Path) -> None:
    tokenizer = modeling.new_tokenizer(DIALOGUE, vocab_size=300, min_frequency=1)
    tokens = SpecialTokens.from_tokenizer(tokenizer)
    model = modeling.new_model(tokenizer, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    # As in ruDialoGPT's config: bos/eos name an ordinary word.
    model.config.bos_token_id = model.config.eos_token_id = 5
    modeling.save(model, tokenizer, tokens, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["eos_token_id"] == tokens.first and config["bos_token_id"] is None
    assert config["pad_token_id"] == tokens.pad
    generation = GenerationConfig.from_pretrained(tmp_path)
    assert generation.eos_token_id == [tokens.first, tokens.second]
    assert generation.pad_token_id == tokens.pad and generation.bos_token_id is None
    assert generation.do_sample is True
    for key, value in asdict(MODEL_CARD).items():
        assert getattr(generation, key) == value
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(tmp_path).convert_tokens_to_ids(FIRST_SPEAKER) == tokens.first


def test_an_interrupted_run_resumes_to_the_same_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tiny_settings(tmp_path, max_steps=8, save_every=3)
    straight = loop.run(settings)
    expected = AutoModelForCausalLM.from_pretrained(settings.out).state_dict()

    batches = loop._micro_batches

    def interrupt_at_step_5(*args: object) -> object:
        for step, micro in batches(*args):
            if step == 5:
                raise KeyboardInterrupt
            yield step, micro

    out = tmp_path / "resumed"
    monkeypatch.setattr(loop, "_micro_batches", interrupt_at_step_5)
    with pytest.raises(loop.TrainingInterrupted, match="step 5"):
        loop.run(replace(settings, out=out))
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file() and not out.exists()
    monkeypatch.setattr(loop, "_micro_batches", batches)
    resumed = loop.run(replace(settings, out=out))

    assert resumed.before == straight.before
    assert resumed.after.loss == pytest.approx(straight.after.loss, abs=1e-5)
    weights = AutoModelForCausalLM.from_pretrained(out).state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = tiny_settings(tmp_path, max_steps=4, save_every=2)

    def interrupt(*args: object) -> object:
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(loop, "_micro_batches", interrupt)
    with pytest.raises(loop.TrainingInterrupted):
        loop.run(settings)
    with pytest.raises(InputError, match="a checkpoint of another run"):
        loop.run(replace(settings, seed=1))


def test_a_local_base_with_the_real_tokenizer(tmp_path: Path, real_tokenizer) -> None:
    """Fine-tuning a directory shaped like ruDialoGPT: its <|endoftext|> id is past the embeddings."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config.from_pretrained(RUDIALOGPT_DIR)
    config.update({"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 64})
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "base")
    real_tokenizer.save_pretrained(tmp_path / "base")
    rows = [(*row[:3], row[3] + " <|endoftext|>") for row in chat_rows()]
    settings = tiny_settings(
        tmp_path, data=write_csv(tmp_path / "chat.csv", rows), from_scratch=False, base=str(tmp_path / "base")
    )
    result = loop.run(replace(settings, max_steps=3))
    assert result.after.loss < result.before.loss
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["eos_token_id"] == 50257 and saved["bos_token_id"] is None and saved["vocab_size"] == 50261


# --- the command line ---------------------------------------------------------------------------


def test_train_command_prints_the_perplexities_last(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_csv(tmp_path / "chat.csv", chat_rows())
    shape = [f"--{key.replace('_', '-')}={value}" for key, value in TINY_MODEL.items()]
    argv = ["--data", str(data), "--out", str(tmp_path / "model"), "--from-scratch", "--max-steps", "3", *shape]
    assert train.main([*argv, "--checkpoint-dir", str(tmp_path / "ck"), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"held-out loss before: \d+\.\d{4}, perplexity before: \d+\.\d{2}", lines[-2])
    assert re.fullmatch(r"held-out loss after: \d+\.\d{4}, perplexity after: \d+\.\d{2}", lines[-1])
    assert AutoTokenizer.from_pretrained(tmp_path / "model").pad_token_id == 0


def test_the_default_base_is_rudialogpt_from_the_hub(tmp_path: Path, monkeypatch, capsys, tiny_model_dir) -> None:
    """The hub id reaches from_pretrained as is; here a local tiny model stands in for the download."""
    asked = []
    real_tokenizer_loader, real_model_loader = AutoTokenizer.from_pretrained, AutoModelForCausalLM.from_pretrained

    def tokenizer_from(name: str, **kwargs: object) -> object:
        asked.append(name)
        return real_tokenizer_loader(tiny_model_dir, **kwargs)

    def model_from(name: str, **kwargs: object) -> object:
        asked.append(name)
        return real_model_loader(tiny_model_dir, **kwargs)

    monkeypatch.setattr(modeling.AutoTokenizer, "from_pretrained", tokenizer_from)
    monkeypatch.setattr(modeling.AutoModelForCausalLM, "from_pretrained", model_from)
    data = write_csv(tmp_path / "chat.csv", chat_rows())
    argv = ["--data", str(data), "--out", str(tmp_path / "model"), "--max-steps", "1", "--no-progress"]
    assert train.main([*argv, "--checkpoint-dir", str(tmp_path / "ck")]) == 0
    assert asked == [modeling.DEFAULT_BASE, modeling.DEFAULT_BASE]

    def offline(name: str, **kwargs: object) -> object:
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {name}.\nCheck your connection.")

    monkeypatch.setattr(modeling.AutoTokenizer, "from_pretrained", offline)
    capsys.readouterr()
    assert train.main([*argv, "--checkpoint-dir", str(tmp_path / "ck2")]) == 2
    error = capsys.readouterr().err.splitlines()
    assert error == [
        f"train.py: cannot load the base model {modeling.DEFAULT_BASE}: We couldn't connect to "
        f"'https://huggingface.co' to load {modeling.DEFAULT_BASE}."
    ]


def test_base_and_from_scratch_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--data", "x.csv", "--out", "o", "--base", "b", "--from-scratch"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(not (SHARED / "data" / "chitchat.csv").is_file(), reason="../shared/data is not here")
def test_the_real_chat_csv_reads_as_documented() -> None:
    dialogues, skipped = formats.read_dialogues(SHARED / "data" / "chitchat.csv")
    assert len(dialogues) == 1659 and skipped == 848
