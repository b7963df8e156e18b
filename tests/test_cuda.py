"""The CUDA path: device and dtype choice, batched generation and deadlines on a GPU (skips without one)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig

from inference.backend import Request
from inference.transformers_backend import TransformersBackend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

DIALOGUES = [("привет",), ("как дела?", "нормально", "что делаешь?"), ("пойдём гулять",)]


def requests(*dialogues: tuple[str, ...], deadline: float = 60) -> list[Request]:
    return [Request(d, time.monotonic() + deadline) for d in dialogues]


def test_auto_picks_cuda_and_a_half_precision(tiny_model_dir: Path) -> None:
    model = TransformersBackend(str(tiny_model_dir))
    assert model.device.type == "cuda"
    assert model.dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert next(model.model.parameters()).device.type == "cuda"
    outcomes = model.generate(requests(*DIALOGUES))
    assert len(outcomes) == 3 and not any(o.timed_out for o in outcomes)


def test_batched_equals_unbatched_on_the_gpu(tiny_model_dir: Path) -> None:
    model = TransformersBackend(str(tiny_model_dir), device="cuda", dtype="float32")
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=12,
        eos_token_id=list(model.tokens.speakers),
        pad_token_id=model.tokens.pad,
        suppress_tokens=[model.tokens.pad],
    )
    alone = [model.generate_ids(requests(d), config)[0][0] for d in DIALOGUES]
    together, _ = model.generate_ids(requests(*DIALOGUES), config)
    assert together == alone


def test_a_deadline_stops_its_row_on_the_gpu(tiny_model_dir: Path) -> None:
    model = TransformersBackend(str(tiny_model_dir), device="cuda")
    late = requests(DIALOGUES[0], deadline=-1)
    on_time = requests(DIALOGUES[1])
    outcomes = model.generate([*late, *on_time])
    assert [o.timed_out for o in outcomes] == [True, False]
