"""Which engine, torch device and dtype the model runs in, and how to name them in logs and notices."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

logger = logging.getLogger(__name__)

# CPU instruction sets that compute bf16 products natively (torch.cpu.get_capabilities() flag: name). Without one,
# torch emulates bf16 and a model runs slower than in fp32.
NATIVE_BF16 = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX-512 BF16"}

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


def native_bf16(capabilities: Mapping[str, object] | None = None) -> list[str]:
    """The CPU's instruction sets that compute bf16 natively (empty when it would be emulated).

    ``capabilities`` is ``torch.cpu.get_capabilities()`` unless given.
    """
    flags = torch.cpu.get_capabilities() if capabilities is None else capabilities
    return [name for flag, name in NATIVE_BF16.items() if flags.get(flag)]


def pick_dtype(requested: str, device: torch.device, capabilities: Mapping[str, object] | None = None) -> torch.dtype:
    """The dtype for DTYPE: ``auto`` is bf16 on CUDA (fp16 without bf16) and on CPUs that compute bf16 natively.

    A CPU computes bf16 natively with AMX or AVX-512 BF16 (``capabilities``, as ``native_bf16`` reads them);
    elsewhere ``auto`` is fp32. The choice on a CPU is logged with its reason.
    """
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        native = native_bf16(capabilities)
        if native:
            logger.info("DTYPE=auto: bfloat16, which this CPU computes natively (%s)", " and ".join(native))
            return torch.bfloat16
        logger.info("DTYPE=auto: float32, as this CPU has neither AMX nor AVX-512 BF16 and would emulate bfloat16")
    return torch.float32


def pick_engine(requested: str, device: torch.device) -> str:
    """The local engine for BACKEND: ``auto`` is CTranslate2 on a CPU (int8 weights, faster there), else transformers.

    CTranslate2 runs on CUDA too when asked for; transformers stays the default on GPUs, where it is measured.
    """
    if requested != "auto":
        return requested
    return "ctranslate2" if device.type == "cpu" else "transformers"


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``: the name DTYPE takes."""
    return str(dtype).removeprefix("torch.")
