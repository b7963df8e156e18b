"""The choice of engine and dtype: by what the device can do, logged with the reason."""

from __future__ import annotations

import logging

import pytest
import torch

from inference.devices import native_bf16, pick_dtype, pick_engine

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("capabilities", "dtype", "reason"),
    [
        ({"amx_bf16": True, "avx512_bf16": True, "avx2": True}, torch.bfloat16, "AMX-BF16 and AVX-512 BF16"),
        ({"avx512_bf16": True, "amx_bf16": False}, torch.bfloat16, "natively (AVX-512 BF16)"),
        ({"avx512_f": True, "avx512_vnni": True, "avx2": True}, torch.float32, "neither AMX nor AVX-512 BF16"),
        ({}, torch.float32, "would emulate bfloat16"),
    ],
)
def test_dtype_auto_on_a_cpu_is_bf16_where_it_computes_bf16_natively(
    capabilities: dict[str, bool], dtype: torch.dtype, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert pick_dtype("auto", CPU, capabilities) == dtype
    assert f"DTYPE=auto: {str(dtype).removeprefix('torch.')}" in caplog.text and reason in caplog.text


def test_a_named_dtype_is_taken_as_it_is() -> None:
    assert pick_dtype("float16", CPU, {}) == torch.float16
    assert pick_dtype("float32", CPU, {"amx_bf16": True}) == torch.float32


def test_this_machines_own_flags_are_read_when_none_are_given() -> None:
    flags = torch.cpu.get_capabilities()
    assert native_bf16() == native_bf16(flags)
    assert pick_dtype("auto", CPU) == (torch.bfloat16 if native_bf16(flags) else torch.float32)


def test_backend_auto_is_ctranslate2_on_a_cpu_and_transformers_on_a_gpu() -> None:
    assert pick_engine("auto", CPU) == "ctranslate2"
    assert pick_engine("auto", torch.device("cuda:1")) == "transformers"
    assert pick_engine("auto", torch.device("mps")) == "transformers"
    assert pick_engine("ctranslate2", torch.device("cuda")) == "ctranslate2"
    assert pick_engine("transformers", CPU) == "transformers"
