"""The CTranslate2 backend on real (tiny) models converted on the spot: replies, stops, deadlines, sampling, cache."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import ctranslate2
import pytest
import torch
from conftest import ROOT, RUDIALOGPT_DIR, build_tiny_model
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from generator import load_models
from inference.backend import BatchStats, ModelLoadError, Request
from inference.codec import PromptCodec
from inference.ctranslate2_backend import CTranslate2Backend
from inference.sampling import MODEL_CARD, Sampling
from inference.transformers_backend import TransformersBackend
from settings import Settings

PROMPTS = [
    ("привет",),
    ("как дела?", "нормально, а у тебя?", "всё хорошо, спасибо"),
    ("что делаешь?", "читаю книгу"),
    ("пойдём гулять",),
]
GREEDY = Sampling(
    max_new_tokens=16, temperature=1.0, top_k=1, top_p=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ct2")


@pytest.fixture(scope="module")
def ct2(tiny_model_dir: Path, cache_dir: Path) -> CTranslate2Backend:
    return CTranslate2Backend(str(tiny_model_dir), cache_dir=cache_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_model_dir), device="cpu", dtype="float32")


def requests(*dialogues: tuple[str, ...], sampling: Sampling = GREEDY, deadline: float = 60) -> list[Request]:
    return [Request(dialogue, time.monotonic() + deadline, sampling) for dialogue in dialogues]


def test_greedy_replies_equal_the_transformers_ones_batched_or_alone(
    ct2: CTranslate2Backend, hf: TransformersBackend
) -> None:
    together = ct2.generate(requests(*PROMPTS))
    assert together == hf.generate(requests(*PROMPTS))
    assert together == [ct2.generate(requests(dialogue))[0] for dialogue in PROMPTS]
    assert sum(bool(outcome.text) for outcome in together) >= 2
    rows, _ = ct2.generate_ids(requests(*PROMPTS))
    assert min(map(len, rows)) < GREEDY.max_new_tokens == max(map(len, rows)), "one row stopped, another ran on"


def test_a_rows_stop_token_ends_only_its_own_reply(ct2: CTranslate2Backend) -> None:
    # The pad token is never generated, so as the only stop it lets every row run to its full length.
    full = {dialogue: ct2.generate_ids(requests(dialogue), end_ids=[ct2.tokens.pad])[0][0] for dialogue in PROMPTS}
    short, long, stop = next(
        (a, b, token)
        for a in PROMPTS
        for b in PROMPTS
        for token in full[a][:8]
        if a != b and token not in full[b] and token not in full[a][: full[a].index(token)]
    )
    rows, _ = ct2.generate_ids(requests(short, long), end_ids=[stop])
    assert rows[0] == full[short][: full[short].index(stop)], "cut at its stop token (left out)"
    assert rows[1] == full[long], "the other row ran on to its full length"


def test_a_row_stops_at_a_token_that_cuts_its_reply_with_the_reply_it_would_have_had(
    cutting_model_dir: Path, tmp_path: Path
) -> None:
    backend = CTranslate2Backend(str(cutting_model_dir), cache_dir=tmp_path, device="cpu", dtype="float32")
    batch = requests(*PROMPTS)
    stopped, _ = backend.generate_ids(batch)
    full, _ = backend.generate_ids(batch, end_ids=backend.tokens.speakers)
    assert all(len(row) == GREEDY.max_new_tokens for row in full), "without it as a stop, every row runs on"
    assert all(len(row) == 1 for row in stopped), "each row stopped at the token that follows its first word"
    replies = [backend.codec.decode(row) for row in stopped]
    assert replies == [backend.codec.decode(row) for row in full] and all(replies)
    assert [outcome.text for outcome in backend.generate(batch)] == replies


def test_the_real_tokenizers_added_tokens_that_cut_a_reply_are_stops(real_tokenizer) -> None:
    codec = PromptCodec(real_tokenizer, "ruDialoGPT-small")
    cutting = real_tokenizer.convert_tokens_to_ids(["<FIRST_SPEAKER>", "<SECOND_SPEAKER>"])
    assert codec.end_ids(50261) == (*codec.tokens.speakers, *cutting)
    past_the_table = real_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert past_the_table >= 50261 and past_the_table not in codec.end_ids(50261)
    assert codec.end_ids(50259) == codec.tokens.speakers, "ids past the table are never stops"


def test_a_past_deadline_stops_only_its_own_row(ct2: CTranslate2Backend) -> None:
    late, on_time = (
        Request(PROMPTS[0], time.monotonic() - 1, GREEDY),
        Request(PROMPTS[1], time.monotonic() + 60, GREEDY),
    )
    rows, timed_out = ct2.generate_ids([late, on_time], end_ids=[ct2.tokens.pad])
    assert timed_out == [True, False]
    assert len(rows[0]) == 1 and len(rows[1]) == GREEDY.max_new_tokens
    assert ct2.generate([late, on_time])[1] == ct2.generate([on_time])[0]


class PastTheDeadlineAt:
    """Stands in for a row's progress: at its ``token``-th token it holds the generating thread past ``deadline``.

    So the deadline falls inside the generation by construction, however fast or slow the machine.
    """

    stopped = False

    def __init__(self, token: int, deadline: float) -> None:
        self._token, self._deadline, self._seen = token, deadline, 0

    def poll(self, text: Callable[[], str]) -> bool:
        self._seen += 1
        if self._seen == self._token:
            time.sleep(max(0.0, self._deadline - time.monotonic()) + 0.01)
        return False


def test_a_deadline_reached_while_generating_stops_the_row_there(ct2: CTranslate2Backend) -> None:
    unstoppable = replace(GREEDY, max_new_tokens=100)
    (full,), _ = ct2.generate_ids(requests(PROMPTS[0], sampling=unstoppable), end_ids=[ct2.tokens.pad])
    deadline = time.monotonic() + 0.2
    request = Request(PROMPTS[0], deadline, unstoppable, progress=PastTheDeadlineAt(5, deadline))  # type: ignore[arg-type]
    (row,), (timed_out,) = ct2.generate_ids([request], end_ids=[ct2.tokens.pad])
    # Past the deadline by the fifth token at the latest (sooner if the machine is slow), never at the end.
    assert timed_out and 0 < len(row) <= 5 and len(full) == 100
    assert row == full[: len(row)]


def test_the_pad_token_is_never_generated(ct2: CTranslate2Backend) -> None:
    hot = replace(GREEDY, top_k=0, temperature=50.0, max_new_tokens=30)
    rows, _ = ct2.generate_ids(requests(*PROMPTS * 16, sampling=hot), end_ids=[ct2.tokens.first])
    drawn = Counter(token for row in rows for token in row)
    assert len(drawn) > len(ct2.codec.tokenizer) // 2, "nearly uniform sampling reaches most of the vocabulary"
    assert ct2.tokens.pad not in drawn


def test_sampling_follows_top_k_top_p_and_temperature(ct2: CTranslate2Backend, hf: TransformersBackend) -> None:
    """The first token of many rows is drawn from transformers' top-k/top-p/temperature distribution."""
    # The tiny random model's next-token scores are nearly flat: a low temperature makes the draw uneven.
    sampling = replace(MODEL_CARD, max_new_tokens=1, top_k=5, top_p=0.8, temperature=0.03)
    prompt = hf.codec.prompt_ids(PROMPTS[1], 100)
    with torch.no_grad():
        logits = hf.model(torch.tensor([prompt])).logits[0, -1]
    logits[hf.tokens.pad] = float("-inf")
    top = torch.softmax(logits.topk(sampling.top_k).values / sampling.temperature, -1)
    ids = logits.topk(sampling.top_k).indices
    keep = (top.cumsum(-1) - top) < sampling.top_p
    expected = dict(zip(ids[keep].tolist(), (top[keep] / top[keep].sum()).tolist(), strict=True))
    assert 1 < len(expected) < sampling.top_k, "top_p must cut some of the top-k here"

    rows, _ = ct2.generate_ids(requests(*[PROMPTS[1]] * 800, sampling=sampling), end_ids=[ct2.tokens.pad])
    drawn = Counter(row[0] for row in rows)
    assert set(drawn) == set(expected)
    for token, probability in expected.items():
        assert abs(drawn[token] / len(rows) - probability) < 0.07, (token, drawn[token], probability)


def reference_greedy(hf: TransformersBackend, prompt: list[int], sampling: Sampling) -> list[int]:
    """Greedy decoding with the penalties over the reply's own tokens, one step at a time (the reference)."""
    reply: list[int] = []
    for _ in range(sampling.max_new_tokens):
        with torch.no_grad():
            scores = hf.model(torch.tensor([prompt + reply])).logits[0, -1]
        scores[hf.tokens.pad] = float("-inf")
        for token in set(reply):
            penalty = sampling.repetition_penalty
            scores[token] = scores[token] / penalty if scores[token] > 0 else scores[token] * penalty
        n = sampling.no_repeat_ngram_size
        if n and len(reply) >= n - 1:
            tail = tuple(reply[len(reply) - n + 1 :])
            for start in range(len(reply) - n + 1):
                if tuple(reply[start : start + n - 1]) == tail:
                    scores[reply[start + n - 1]] = float("-inf")
        token = int(scores.argmax())
        if token in hf.tokens.speakers:
            break
        reply.append(token)
    return reply


def test_penalties_apply_to_the_reply_as_in_the_reference(ct2: CTranslate2Backend, hf: TransformersBackend) -> None:
    plain = ct2.generate_ids(requests(*PROMPTS))[0]
    assert any(len(set(row)) < len(row) for row in plain), "without penalties some greedy reply repeats a token"
    for sampling in (
        replace(GREEDY, repetition_penalty=2.0),
        replace(GREEDY, no_repeat_ngram_size=2),
        replace(GREEDY, repetition_penalty=1.5, no_repeat_ngram_size=1),
    ):
        for dialogue in PROMPTS:
            (row,), _ = ct2.generate_ids(requests(dialogue, sampling=sampling))
            assert row == reference_greedy(hf, hf.codec.prompt_ids(dialogue, 100), sampling), (sampling, dialogue)
    no_repeats = ct2.generate_ids(requests(*PROMPTS, sampling=replace(GREEDY, no_repeat_ngram_size=1)))[0]
    assert all(len(set(row)) == len(row) for row in no_repeats)


def test_each_batch_reports_its_tokens_to_the_hook(ct2: CTranslate2Backend) -> None:
    seen: list[BatchStats] = []
    ct2.on_batch = seen.append
    try:
        rows, _ = ct2.generate_ids(requests(*PROMPTS))
    finally:
        ct2.on_batch = None
    (stats,) = seen
    assert stats.prompt_tokens == tuple(len(ct2.codec.prompt_ids(d, 100)) for d in PROMPTS)
    assert stats.new_tokens == tuple(map(len, rows)) and stats.seconds > 0


def test_the_conversion_is_made_once_per_version_of_the_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model_dir = build_tiny_model(tmp_path / "model")
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO)
    first = CTranslate2Backend(str(model_dir), cache_dir=cache)
    assert "converting" in caplog.text and first.summary == "ctranslate2, cpu, int8_float32"
    (made,) = cache.iterdir()
    caplog.clear()
    again = CTranslate2Backend(str(model_dir), cache_dir=cache)
    assert "converting" not in caplog.text and "made earlier" in caplog.text
    assert again.generate(requests(*PROMPTS)) == first.generate(requests(*PROMPTS))

    (model_dir / "notes.md").write_text("not part of the model")
    caplog.clear()
    CTranslate2Backend(str(model_dir), cache_dir=cache)
    assert "converting" not in caplog.text, "only the model's own files count"

    build_tiny_model(model_dir, seed=1)  # train.py writing the model again
    caplog.clear()
    changed = CTranslate2Backend(str(model_dir), cache_dir=cache)
    assert "converting" in caplog.text and f"removed {made}" in caplog.text
    (remade,) = cache.iterdir()
    assert remade != made
    assert changed.generate(requests(*PROMPTS)) != first.generate(requests(*PROMPTS))


# A bot process whose conversion stops once written, before it is renamed into place: a process killed part-way.
STOPS_BEFORE_PUBLISHING = """
import sys, threading
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import inference.ct2_conversion as conversion
from inference.ctranslate2_backend import CTranslate2Backend

def stop_here(partial, target):
    print("written", partial, flush=True)
    threading.Event().wait()

conversion._publish = stop_here
CTranslate2Backend(sys.argv[2], cache_dir=Path(sys.argv[3]))
"""


def test_a_conversion_cut_off_part_way_is_removed_and_one_still_running_is_not(
    tmp_path: Path, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    caplog.set_level(logging.INFO)
    command = [sys.executable, "-c", STOPS_BEFORE_PUBLISHING, str(ROOT), str(tiny_model_dir), str(cache)]
    converting = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = converting.stdout.readline()
        assert line.startswith("written "), line
        partial = Path(line.removeprefix("written ").strip())
        assert (partial / "model.bin").is_file()
        # A second process starting meanwhile converts for itself and leaves the running one's folder alone.
        first = CTranslate2Backend(str(tiny_model_dir), cache_dir=cache)
        assert "converting" in caplog.text and (partial / "model.bin").is_file()
        (made,) = (folder for folder in cache.iterdir() if not folder.name.startswith("."))
    finally:
        converting.kill()
        converting.wait(30)
    # Leftovers of a bot before this version (its folders were named by process id), and the lock of a
    # process killed while it loaded the model, before it wrote anything.
    (old := cache / f".{made.name}.partial-4242").mkdir()
    (old / "model.bin").write_bytes(b"half of it")
    (cache / ".other-int8-0123.partial-0a1b2c.lock").touch()

    caplog.clear()
    again = CTranslate2Backend(str(tiny_model_dir), cache_dir=cache)
    assert "made earlier" in caplog.text
    assert f"removed {partial}" in caplog.text and f"removed {old}" in caplog.text
    assert list(cache.iterdir()) == [made], "nothing else is left"
    assert again.generate(requests(*PROMPTS)) == first.generate(requests(*PROMPTS))


def test_a_model_ctranslate2_cannot_convert_is_one_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in tiny_model_dir.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(ModelLoadError, match=r"could not convert .*broken to CTranslate2.*BACKEND=transformers"):
        CTranslate2Backend(str(broken), cache_dir=tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir()), "no half-made conversion is left behind"


def test_a_number_format_ctranslate2_lacks_here_is_named(tmp_path: Path, tiny_model_dir: Path) -> None:
    missing = [d for d in ("float16", "bfloat16") if d not in ctranslate2.get_supported_compute_types("cpu")]
    if not missing:
        pytest.skip("CTranslate2 computes every format on this CPU")
    with pytest.raises(ModelLoadError, match=f"DTYPE={missing[0]}: CTranslate2 does not compute .* it does .*int8"):
        CTranslate2Backend(str(tiny_model_dir), cache_dir=tmp_path, dtype=missing[0])


@pytest.fixture(scope="module")
def rudialogpt_shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ruDialoGPT-small's real tokenizer and vocabulary on a one-layer model (skips without ../shared)."""
    if not (RUDIALOGPT_DIR / "tokenizer_config.json").is_file():
        pytest.skip("../shared/rudialogpt-small is not here")
    directory = tmp_path_factory.mktemp("rudialogpt_shaped")
    config = GPT2Config.from_pretrained(RUDIALOGPT_DIR)
    config.update({"n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 64, "tie_word_embeddings": False})
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(RUDIALOGPT_DIR).save_pretrained(directory)
    return directory


def test_the_real_tokenizers_token_past_the_embedding_table_is_left_out(
    rudialogpt_shaped: Path, tmp_path: Path
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(rudialogpt_shaped)
    rows = GPT2Config.from_pretrained(rudialogpt_shaped).vocab_size
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == rows == len(tokenizer) - 1
    with pytest.raises(ValueError, match=f"Vocabulary has size {rows + 1} but the model expected .* {rows}"):
        ctranslate2.converters.TransformersConverter(str(rudialogpt_shaped)).convert(str(tmp_path / "stock"))

    backend = CTranslate2Backend(str(rudialogpt_shaped), cache_dir=tmp_path / "cache")
    (folder,) = (tmp_path / "cache").iterdir()
    vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
    assert len(vocabulary) == rows and "<|endoftext|>" not in vocabulary
    assert [vocabulary[i] for i in backend.tokens.speakers] == ["@@ПЕРВЫЙ@@", "@@ВТОРОЙ@@"]
    assert json.loads((folder / "source.json").read_text(encoding="utf-8"))["dropped_tokens"] == ["<|endoftext|>"]
    rows_out, _ = backend.generate_ids(requests(*PROMPTS, sampling=MODEL_CARD))
    assert all(token < rows for row in rows_out for token in row)


def test_a_table_with_rows_no_token_names_converts(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "model")
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    model.resize_token_embeddings(model.config.vocab_size + 6)
    model.save_pretrained(model_dir)
    backend = CTranslate2Backend(str(model_dir), cache_dir=tmp_path / "cache")
    (folder,) = (tmp_path / "cache").iterdir()
    assert len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))) == model.config.vocab_size
    assert backend.generate(requests(*PROMPTS))


def test_backend_auto_is_ctranslate2_on_this_cpu_and_converts_next_to_the_database(
    tiny_model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if torch.cuda.is_available():
        pytest.skip("auto picks transformers on CUDA")
    caplog.set_level(logging.INFO)
    settings = Settings(
        model_path=str(tiny_model_dir),
        toast_model_path=str(tiny_model_dir),
        db_path=str(tmp_path / "db" / "bot.sqlite3"),
    )
    chat, tasks = load_models(settings)
    assert isinstance(chat, CTranslate2Backend) and all(backend is chat for backend in tasks.values())
    assert list((tmp_path / "db" / "ct2").iterdir())
    assert "BACKEND=auto: ctranslate2 on cpu" in caplog.text
    chat, _ = load_models(replace(settings, backend="transformers"))
    assert isinstance(chat, TransformersBackend)


def test_a_hub_model_converts_from_its_downloaded_snapshot(tiny_model_dir: Path, tmp_path: Path) -> None:
    """MODEL_PATH=owner/name with the model in the hub cache (offline): converted from the cached snapshot."""
    commit = "0" * 40
    snapshot = tmp_path / "hub" / "models--owner--tiny" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in tiny_model_dir.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (tmp_path / "hub" / "models--owner--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--owner--tiny" / "refs" / "main").write_text(commit)
    script = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from inference.ctranslate2_backend import CTranslate2Backend;"
        "backend = CTranslate2Backend('owner/tiny', cache_dir=Path(sys.argv[2]));"
        "print(backend.summary, *(p.name for p in Path(sys.argv[2]).iterdir()))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT), str(tmp_path / "ct2")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    summary, folder = done.stdout.strip().rsplit(" ", 1)
    assert summary == "ctranslate2, cpu, int8_float32" and folder.startswith("owner--tiny-int8-")
    CTranslate2Backend(str(tiny_model_dir), cache_dir=tmp_path / "local")
    assert folder.endswith(next((tmp_path / "local").iterdir()).name.rsplit("-", 1)[1]), "same files, same fingerprint"


DROPPED_AFTER_EACH_REPLY = """
import subprocess, sys, time
from pathlib import Path
from inference.backend import Request
from inference.ctranslate2_backend import CTranslate2Backend

model, cache = sys.argv[1], Path(sys.argv[2])
for _ in range(30):
    backend = CTranslate2Backend(model, cache_dir=cache, device="cpu")
    backend.generate([Request(("привет",), time.monotonic() + 60)])
    backend = None  # dropped while CTranslate2's worker may still hold the batch's callback
    subprocess.run([sys.executable, "-c", "pass"], check=True)
print("survived")
"""


def test_a_backend_dropped_right_after_a_reply_ends_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The batch's callback used to hold the backend, so CTranslate2 could drop its last reference in its own worker
    # thread, which then joined itself: std::terminate, the whole process aborted (a test run, here).
    done = subprocess.run(
        [sys.executable, "-c", DROPPED_AFTER_EACH_REPLY, str(tiny_model_dir), str(tmp_path / "ct2")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "survived", done.stderr[-2000:]
