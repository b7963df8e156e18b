"""The fine-tuning pipeline: CSV reading, example building, a tiny training run, resuming, saving, the CLI."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from conftest import ROOT, RUDIALOGPT_DIR, SHARED, TINY_TEXTS
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GPT2LMHeadModel

import train
from inference import devices
from inference.dialogue import FIRST_SPEAKER, SECOND_SPEAKER, SpecialTokens, build_prompt
from inference.modes import request_turn
from inference.sampling import TASK_DEFAULTS
from training import data, formats, loop, modeling, options
from training.data import IGNORE_INDEX
from training.formats import Dialogue, InputError
from training.options import TrainingInterrupted, TrainSettings

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


@contextmanager
def interrupt_after_forward(when: Callable[[int, bool], bool]) -> Iterator[None]:
    """Ctrl+C right after a forward pass of the model: ``when(n, training)`` picks the n-th pass in that mode.

    A forward hook on every module (torch's global one) reaches the model a run builds inside.
    """
    calls = {True: 0, False: 0}

    def hook(module: torch.nn.Module, args: object, output: object) -> None:
        if isinstance(module, GPT2LMHeadModel):
            calls[module.training] += 1
            if when(calls[module.training], module.training):
                raise KeyboardInterrupt

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def tiny_argv(tmp_path: Path, *extra: str, data_file: Path | None = None) -> list[str]:
    data_file = data_file or write_csv(tmp_path / "chat.csv", chat_rows())
    shape = [f"--{key.replace('_', '-')}={value}" for key, value in TINY_MODEL.items()]
    return ["--data", str(data_file), "--out", str(tmp_path / "model"), "--from-scratch", "--no-progress", *shape,
            "--checkpoint-dir", str(tmp_path / "ck"), *extra]  # fmt: skip


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    error = capsys.readouterr().err
    assert "Traceback" not in error
    lines = [line for line in error.splitlines() if line.startswith("train.py:")]
    assert len(lines) == 1, error
    return lines[0]


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
    read = formats.read_rows(write_csv(tmp_path / "chat.csv", rows, header))
    assert read.incomplete == 2 and read.low_rated == 0
    dialogues = read.dialogues
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


@pytest.mark.parametrize(
    ("task", "content", "expected"),
    [
        ("toast", b"context_1,response\na,b\n", "no column topic, text in the header 'context_1,response'"),
        ("toast", b"topic,text\n,b\n", "no row has both topic and text (1 rows skipped)"),
        ("chat", b"context_3,context_2,context_1,response,rating\n,,a,b,+\n", "row 1 (line 2): rating '+' is not"),
        ("chat", b"context_3,context_2,context_1,response,rating\n,,a,b,-1\n", "1 rated below --min-rating 1"),
    ],
)
def test_task_and_rating_errors_are_one_clear_line(tmp_path: Path, capsys, task, content, expected) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    assert train.main(["--data", str(path), "--out", str(tmp_path / "out"), "--from-scratch", "--task", task]) == 2
    line = one_error_line(capsys)
    assert str(path) in line and expected in line


def test_a_feedback_export_trains_on_rows_rated_at_least_min_rating(tmp_path: Path) -> None:
    header = ("context_3", "context_2", "context_1", "response", "rating")
    rows = [
        ("", "", "привет", "хороший ответ", "1"),
        ("", "", "как дела?", "плохой ответ", "-1"),
        ("", "", "что делаешь?", "без оценки", ""),
        ("", "", "куда идём?", "спорный ответ", "0"),
        ("", "", "какую?", "отличный ответ", "+3"),
    ]
    path = write_csv(tmp_path / "feedback.csv", rows, header)
    read = formats.read_rows(path)
    assert [d.response for d in read.dialogues] == ["хороший ответ", "без оценки", "отличный ответ"]
    assert read.low_rated == 2 and read.incomplete == 0
    assert [d.response for d in formats.read_rows(path, min_rating=0).dialogues] == [
        "хороший ответ", "без оценки", "спорный ответ", "отличный ответ"
    ]  # fmt: skip
    assert [d.response for d in formats.read_rows(path, min_rating=-5).dialogues] == [row[3] for row in rows]
    assert formats.read_rows(path, min_rating=2).low_rated == 3


def test_the_command_says_how_many_rows_it_skipped_for_their_rating(tmp_path: Path, caplog) -> None:
    rated = [(*row, "-1" if index % 4 == 0 else "+1") for index, row in enumerate(chat_rows())]
    path = write_csv(tmp_path / "feedback.csv", rated, (*HEADER, "rating"))
    with caplog.at_level(logging.INFO):
        assert train.main(tiny_argv(tmp_path, "--max-steps", "1", data_file=path)) == 0
    low = sum(row[4] == "-1" for row in rated)
    assert f"{low} rows skipped for a rating below --min-rating 1" in caplog.text


@pytest.mark.parametrize("task", ["toast", "horoscope"])
def test_a_mode_task_reads_topic_and_text_as_the_request_turn_and_the_reply(tmp_path: Path, task) -> None:
    rows = [("День рождения", "Желаю счастья!"), ("", "без темы"), ("Лев", ""), ("  Новый  год ", "С праздником!")]
    swapped = [(text, topic) for topic, text in rows]  # columns in any order
    read = formats.read_rows(write_csv(tmp_path / "texts.csv", swapped, ("text", "topic")), task)
    assert read.dialogues == [
        Dialogue((request_turn(task, "День рождения"),), "Желаю счастья!"),
        Dialogue((request_turn(task, "Новый год"),), "С праздником!"),
    ]
    assert read.incomplete == 2


def test_fields_larger_than_csvs_default_limit_are_read(tmp_path: Path) -> None:
    huge = "слово " * 40_000  # 240k characters, past csv's default limit of 131,072
    path = write_csv(tmp_path / "chat.csv", [("", "", huge, "ответ"), ("", "", "вопрос", "ответ 2")])
    read = formats.read_rows(path)
    assert read.dialogues[0].context == (huge.strip(),)


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


def test_a_toast_example_is_the_bots_request_prompt_then_the_toast(tmp_path: Path, tokenizer, tokens) -> None:
    path = write_csv(tmp_path / "toasts.csv", [("День рождения", "Будь счастлив")], ("topic", "text"))
    (dialogue,) = formats.read_rows(path, "toast").dialogues
    example = data.build_example(tokenizer, tokens, dialogue, max_length=128)
    assert tokenizer.decode(example.input_ids) == (
        f"{FIRST_SPEAKER} {request_turn('toast', 'день рождения')} {SECOND_SPEAKER} Будь счастлив {FIRST_SPEAKER}"
    )


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


@pytest.mark.parametrize("task", ["chat", "toast"])
def test_saved_configs_stop_at_the_speakers_with_the_tasks_sampling(tmp_path: Path, task: str) -> None:
    tokenizer = modeling.new_tokenizer(DIALOGUE, vocab_size=300, min_frequency=1)
    tokens = SpecialTokens.from_tokenizer(tokenizer)
    model = modeling.new_model(tokenizer, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    # As in ruDialoGPT's config: bos/eos name an ordinary word.
    model.config.bos_token_id = model.config.eos_token_id = 5
    modeling.save(model, tokenizer, tokens, tmp_path, task)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["eos_token_id"] == tokens.first and config["bos_token_id"] is None
    assert config["pad_token_id"] == tokens.pad
    generation = GenerationConfig.from_pretrained(tmp_path)
    assert generation.eos_token_id == [tokens.first, tokens.second]
    assert generation.pad_token_id == tokens.pad and generation.bos_token_id is None
    assert generation.do_sample is True
    for key, value in asdict(TASK_DEFAULTS[task]).items():
        assert getattr(generation, key) == value, key
    assert json.loads((tmp_path / "generation_config.json").read_text())["task"] == task
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(tmp_path).convert_tokens_to_ids(FIRST_SPEAKER) == tokens.first


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_all_follow_the_umask(tmp_path: Path, umask: int) -> None:
    tokenizer = modeling.new_tokenizer(DIALOGUE, vocab_size=300, min_frequency=1)
    model = modeling.new_model(tokenizer, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    previous = os.umask(umask)
    try:
        modeling.save(model, tokenizer, SpecialTokens.from_tokenizer(tokenizer), tmp_path / "out")
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in (tmp_path / "out").iterdir()}
    assert modes["model.safetensors"] == 0o666 & ~umask
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_no_weight_decay_on_biases_and_layer_norms(tokenizer) -> None:
    model = modeling.new_model(tokenizer, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    groups = loop.parameter_groups(model, 0.1)
    decayed = {id(p) for group in groups if group["weight_decay"] == 0.1 for p in group["params"]}
    spared = {id(p) for group in groups if group["weight_decay"] == 0.0 for p in group["params"]}
    norms = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    biases = {id(p) for name, p in model.named_parameters() if name.endswith(".bias")}
    weights = {id(p) for name, p in model.named_parameters() if name.endswith(".weight")} - norms
    assert norms and biases and norms | biases == spared
    assert weights == decayed  # attention, MLP and embedding matrices
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))


def test_a_run_interrupted_by_ctrl_c_resumes_to_the_same_model(tmp_path: Path) -> None:
    """Ctrl+C halfway through a step (dropout masks drawn, one micro-batch's gradients in) resumes exactly."""
    settings = tiny_settings(tmp_path, max_steps=8, save_every=3, grad_accum=2, dropout=0.1)
    straight = loop.run(settings)
    expected = AutoModelForCausalLM.from_pretrained(settings.out).state_dict()

    # 17 training examples in batches of 4, two per step: steps of 2, 2 and 1 batches per epoch. The 9th
    # training forward pass is the second batch of step 4, one step after the checkpoint of step 3.
    out = tmp_path / "resumed"
    with pytest.raises(TrainingInterrupted, match="step 4"), interrupt_after_forward(lambda n, train: train and n == 9):
        loop.run(replace(settings, out=out))
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file() and not out.exists()
    resumed = loop.run(replace(settings, out=out))

    assert resumed.before == straight.before
    assert resumed.after.loss == pytest.approx(straight.after.loss, abs=1e-6)
    weights = AutoModelForCausalLM.from_pretrained(out).state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6)

    # Ctrl+C between the optimizer's update and the step's end can't be saved: the run resumes, as after
    # a kill, from the last periodic checkpoint (step 3), and still ends at the same model.
    updates = []

    def interrupt_the_fifth_update(optimizer: object, args: object, kwargs: object) -> None:
        updates.append(1)
        if len(updates) == 5:
            raise KeyboardInterrupt

    out = tmp_path / "resumed_again"
    handle = register_optimizer_step_post_hook(interrupt_the_fifth_update)
    try:
        with pytest.raises(
            TrainingInterrupted, match="while updating the weights: resumes from the checkpoint of step 3"
        ):
            loop.run(replace(settings, out=out))
    finally:
        handle.remove()
    assert loop.run(replace(settings, out=out)).after.loss == pytest.approx(straight.after.loss, abs=1e-6)
    weights = AutoModelForCausalLM.from_pretrained(out).state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    settings = tiny_settings(tmp_path, max_steps=4, save_every=2)
    with pytest.raises(TrainingInterrupted), interrupt_after_forward(lambda n, train: train and n == 1):
        loop.run(settings)
    with pytest.raises(InputError, match="a checkpoint of another run"):
        loop.run(replace(settings, seed=1))


def test_the_checkpoint_folder_is_the_runs_own(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Only a new or empty folder or a checkpoint of train.py is used, and only its own files are deleted."""
    mine = tmp_path / "ck"
    mine.mkdir()
    (mine / "notes.txt").write_text("мои заметки")
    assert train.main(tiny_argv(tmp_path, "--max-steps", "2")) == 2
    assert "holds files that are not a checkpoint of train.py (notes.txt)" in one_error_line(capsys)
    assert (mine / "notes.txt").read_text() == "мои заметки" and not (tmp_path / "model").exists()

    for overlapping in (tmp_path / "model", tmp_path / "model" / "ck", tmp_path):
        assert train.main([*tiny_argv(tmp_path, "--max-steps", "2"), "--checkpoint-dir", str(overlapping)]) == 2
        assert f"{overlapping} overlaps --out {tmp_path / 'model'}" in one_error_line(capsys)

    # A file put into the checkpoint folder during the run stays, with its folder; the checkpoint's files go.
    (mine / "notes.txt").unlink()
    settings = tiny_settings(tmp_path, checkpoint_dir=mine, max_steps=6, save_every=2)

    def drop_a_note(n: int, training: bool) -> bool:
        if training and n == 3:  # after the checkpoint of step 2, before the one of step 4
            (mine / "notes.txt").write_text("новая заметка")
        return False

    with interrupt_after_forward(drop_a_note):
        loop.run(settings)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
    assert [path.name for path in mine.iterdir()] == ["notes.txt"]
    assert (tmp_path / "model" / "model.safetensors").is_file()


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
    assert asked == [options.DEFAULT_BASE, options.DEFAULT_BASE]


def test_offline_a_hub_base_fails_at_once_naming_from_scratch(tmp_path: Path) -> None:
    """No hub: one request, no retries, one line that says what to do (a hub that refuses connections here)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connections to it are refused
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TRANSFORMERS_"))}
    env |= {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    data_file = write_csv(tmp_path / "chat.csv", chat_rows())
    common = ["--data", str(data_file), "--no-progress", "--checkpoint-dir", str(tmp_path / "ck")]
    script = (
        "import sys, train\n"
        f"sys.exit(train.main({[*common, '--out', str(tmp_path / 'a')]!r}) + train.main("
        f"{[*common, '--out', str(tmp_path / 'b'), '--base', 'models/base']!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 4, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr[-3000:]
    for line, name in zip(lines, (options.DEFAULT_BASE, "models/base"), strict=True):
        assert line.startswith(f"train.py: cannot load the base model {name}: no local folder ")
        assert "the hub cannot be reached" in line and line.endswith("pass --from-scratch to train without the hub, "
                                                                     "or --base with a local model folder")  # fmt: skip


def test_a_missing_local_base_folder_is_named(tmp_path: Path, capsys, monkeypatch) -> None:
    """A path whose parent exists here is a local folder, never a hub id: no network for it."""
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    for base in ("models/base", "./base", str(tmp_path / "base")):
        argv = tiny_argv(tmp_path)
        argv.remove("--from-scratch")
        assert train.main([*argv, "--base", base]) == 2
        assert f"cannot load the base model {base}: " in (line := one_error_line(capsys))
        assert line.endswith(f"{(tmp_path / base).resolve()} is no such folder")


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("chat.csv", "--out {tmp}/chat.csv: is a file, not a folder"),
        ("chat.csv/model", "--out {tmp}/chat.csv/model: cannot be made: {tmp}/chat.csv is a file, not a folder"),
        ("/sys/model", "--out /sys/model: cannot write in /sys: Permission denied"),
    ],
)
def test_out_is_checked_before_any_work(tmp_path: Path, capsys, out: str, expected: str) -> None:
    if out.startswith("/sys") and not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    argv = tiny_argv(tmp_path)
    argv[argv.index("--out") + 1] = str(tmp_path / out)
    assert train.main(argv) == 2
    assert one_error_line(capsys) == f"train.py: {expected.format(tmp=tmp_path)}"
    assert not (tmp_path / "ck").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "locked").mkdir(mode=0o555)
    argv = tiny_argv(tmp_path)
    argv[argv.index("--out") + 1] = str(tmp_path / "locked" / "model")
    assert train.main(argv) == 2
    assert "cannot write in" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("cuda:abc", "--device 'cuda:abc' is not a device name: use auto, cpu, cuda, cuda:N or mps"),
        ("gpu", "--device 'gpu' is not a device name: use auto, cpu, cuda, cuda:N or mps"),
        ("meta", "--device 'meta' is not supported"),
        ("cuda", "--device cuda: no CUDA GPU is available here"),
        ("cuda:7", "--device cuda:7: "),
        ("mps", "--device mps: Apple's MPS is not available here"),
    ],
)
def test_device_is_checked_before_any_work(tmp_path: Path, capsys, device: str, expected: str) -> None:
    if device.startswith("cuda:7") and torch.cuda.device_count() > 7:
        pytest.skip("eight GPUs here")
    if (device == "cuda" and torch.cuda.is_available()) or (device == "mps" and torch.backends.mps.is_available()):
        pytest.skip(f"{device} is here")
    with interrupt_after_forward(lambda n, training: pytest.fail("the model ran")):
        assert train.main(tiny_argv(tmp_path, "--device", device)) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "model").exists() and not (tmp_path / "ck").exists()


def test_valid_devices_are_taken() -> None:
    assert devices.pick_device("cpu") == torch.device("cpu")
    assert devices.pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert devices.pick_device("cuda:0") == torch.device("cuda:0")


def test_ctrl_c_before_the_training_loop_ends_quietly_with_130(tmp_path: Path, capsys) -> None:
    """During the held-out evaluation before training: no traceback, one line, exit status 130."""
    with interrupt_after_forward(lambda n, training: not training):
        assert train.main(tiny_argv(tmp_path)) == 130
    assert one_error_line(capsys) == "train.py: interrupted before training; nothing new saved"
    assert not (tmp_path / "model").exists()


def test_ctrl_c_in_the_loop_says_how_to_resume(tmp_path: Path, capsys) -> None:
    with interrupt_after_forward(lambda n, training: training and n == 2):
        assert train.main(tiny_argv(tmp_path, "--max-steps", "3")) == 130
    assert one_error_line(capsys) == (
        f"train.py: interrupted at step 1; {tmp_path / 'ck'} saved: run the same command to resume"
    )


def test_progress_bars_for_evaluation_and_logs_through_tqdm(tmp_path: Path, capsys, monkeypatch) -> None:
    """The held-out evaluation has a bar, and log lines are written through tqdm so they don't break bars."""
    written = []
    monkeypatch.setattr(loop.tqdm, "write", classmethod(lambda cls, message, **kwargs: written.append(message)))
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    try:
        loop.run(tiny_settings(tmp_path, max_steps=2, progress=True))
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    bars = capsys.readouterr().err
    assert "held-out loss before:" in bars and "training:" in bars
    assert any("held-out loss before training" in message for message in written)


def test_too_small_max_length_names_the_option(tmp_path: Path, capsys) -> None:
    assert train.main(tiny_argv(tmp_path, "--max-length", "3")) == 2
    line = one_error_line(capsys)
    assert "too few usable rows" in line and "longer than --max-length 3 tokens" in line


def test_help_documents_every_option_without_empty_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--epochs", "--batch-size", "--vocab-size", "--n-embd", "--n-layer", "--n-head", "--n-positions"):
        assert re.search(rf"{option} [A-Z_]+ [a-z]", text), option  # a help text follows the metavar
    assert "(default: None)" not in text and "(default: False)" not in text
    lr_help = text[text.rindex("--lr LR") : text.rindex("--max-length MAX_LENGTH")]
    assert lr_help.count("default") == 1


def test_every_option_reaches_its_setting() -> None:
    argv = ["--data", "d.csv", "--out", "o", "--task", "toast", "--base", "b", "--min-rating", "-1", "--epochs", "2",
            "--max-steps", "5", "--seed", "3", "--batch-size", "2", "--grad-accum", "4", "--lr", "0.1",
            "--max-length", "64", "--val-fraction", "0.5", "--vocab-size", "500", "--n-embd", "8", "--n-layer", "1",
            "--n-head", "2", "--n-positions", "64", "--dropout", "0.2", "--device", "cpu", "--checkpoint-dir", "c",
            "--save-every", "7", "--no-progress"]  # fmt: skip
    settings = train.parse_args(argv)
    assert settings == TrainSettings(
        data=Path("d.csv"), out=Path("o"), task="toast", base="b", min_rating=-1, epochs=2.0, max_steps=5, seed=3,
        batch_size=2, grad_accum=4, learning_rate=0.1, max_length=64, val_fraction=0.5, vocab_size=500, n_embd=8,
        n_layer=1, n_head=2, n_positions=64, dropout=0.2, device="cpu", checkpoint_dir=Path("c"), save_every=7,
        progress=False,
    )  # fmt: skip
    assert train.parse_args(argv[:4]) == TrainSettings(data=Path("d.csv"), out=Path("o"))


def test_train_a_toast_model(tmp_path: Path, capsys) -> None:
    """--task toast on topic,text: the saved model carries the toast sampling and says it is a toast model."""
    holidays = ["День рождения", "Новый год", "Свадьба", "8 марта", "23 февраля"]
    toasts = ["За тебя и твоё счастье!", "Пусть мечты сбываются!", "Любви вам и терпения!", "Весны в душе!"]
    rows = [(holiday, toast) for holiday in holidays for toast in toasts]
    path = write_csv(tmp_path / "toasts.csv", rows, ("topic", "text"))
    assert (
        train.main(
            tiny_argv(
                tmp_path, "--task", "toast", "--max-steps", "20", "--batch-size", "4", "--lr", "0.01", data_file=path
            )
        )
        == 0
    )
    before, after = (float(line.split()[3].rstrip(",")) for line in capsys.readouterr().out.splitlines()[-2:])
    assert after < before - 1.0
    generation = json.loads((tmp_path / "model" / "generation_config.json").read_text())
    assert generation["task"] == "toast"
    assert generation["temperature"] == TASK_DEFAULTS["toast"].temperature
    assert generation["max_new_tokens"] == TASK_DEFAULTS["toast"].max_new_tokens


def test_base_and_from_scratch_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--data", "x.csv", "--out", "o", "--base", "b", "--from-scratch"])
    assert exit_info.value.code == 2


@pytest.mark.skipif(not (SHARED / "data" / "chitchat.csv").is_file(), reason="../shared/data is not here")
def test_the_real_chat_csv_reads_as_documented() -> None:
    read = formats.read_rows(SHARED / "data" / "chitchat.csv")
    assert len(read.dialogues) == 1659 and read.incomplete == 848
