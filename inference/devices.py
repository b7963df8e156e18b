"""Which torch device and dtype the model runs in, and how to name them in logs and notices."""

from __future__ import annotations

import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


class DeviceError(ValueError):
    """A device that is malformed or not on this machine; the message says which and what to use."""


def pick_device(requested: str) -> torch.device:
    """The torch device for DEVICE, checked to exist here: ``auto`` takes CUDA when present.

    Raises DeviceError for a malformed name (``cuda:abc``) or a device this machine lacks, so the
    mistake surfaces before any work rather than as a traceback deep in loading or training.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise DeviceError(f"{requested!r} is not a device name: use {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            build = "" if torch.version.cuda else ", this torch is built without CUDA"
            raise DeviceError(f"{requested}: no CUDA GPU is available here{build}: use cpu or auto")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"{requested}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"{requested}: Apple's MPS is not available here: use cpu or auto")
        return device
    raise DeviceError(f"{requested!r} is not supported: use {DEVICE_CHOICES}")


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
