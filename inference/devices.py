"""Which torch device and dtype the model runs in, and how to name them in logs and notices."""

from __future__ import annotations

import torch


def pick_device(requested: str) -> torch.device:
    """The torch device for DEVICE: ``auto`` takes CUDA when present."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The dtype for DTYPE: ``auto`` is bf16 on CUDA (fp16 without bf16) and on CPUs with AMX, else fp32."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.cpu.get_capabilities().get("amx_bf16", False):
        return torch.bfloat16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``: the name DTYPE takes."""
    return str(dtype).removeprefix("torch.")
