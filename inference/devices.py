"""Which engine, device and dtype the model runs in, and how to name them in logs and notices.

torch is imported only where an answer needs it: a CTranslate2 bot on a Linux CPU never loads it (about 220 MB
resident, a third of such a bot's memory).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# CPU instruction sets that compute bf16 products natively (torch.cpu.get_capabilities() flag: name). Without one,
# torch emulates bf16 and a model runs slower than in fp32.
NATIVE_BF16 = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX-512 BF16"}

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE_NAME = re.compile(r"(?P<type>[a-z]+)(?::(?P<index>\d+))?")
# Linux exposes these once a GPU driver is loaded (NVIDIA's, or AMD's for ROCm builds of torch): without one of
# them no torch build can see a GPU, so DEVICE=auto needn't import torch to ask.
_GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/kfd")


class DeviceError(ValueError):
    """A device that is malformed or not on this machine; the message says which and what to use."""


@dataclass(frozen=True)
class Device:
    """A device named as torch names it (``cpu``, ``cuda:1``), known to exist here, without importing torch."""

    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


def gpu_driver_loaded() -> bool:
    """False only where no GPU can be used: a Linux machine without a GPU driver; True elsewhere (torch will tell)."""
    return sys.platform != "linux" or any(Path(path).exists() for path in _GPU_DRIVER_PATHS)


def resolve_device(requested: str) -> Device:
    """The device for DEVICE, checked to exist here: ``auto`` takes CUDA when present.

    Raises DeviceError for a malformed name (``cuda:abc``) or a device this machine lacks, so the
    mistake surfaces before any work rather than as a traceback deep in loading or training. torch is
    imported only to check a GPU, and for ``auto`` only where a GPU driver is loaded.
    """
    if requested == "auto":
        return Device("cuda" if gpu_driver_loaded() and _torch().cuda.is_available() else "cpu")
    match = _DEVICE_NAME.fullmatch(requested)
    if match is None or match["type"] not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"{requested!r} is {_unsupported(requested)}: use {DEVICE_CHOICES}")
    device = Device(match["type"], None if match["index"] is None else int(match["index"]))
    if device.type == "cpu":
        return device
    torch = _torch()
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            build = "" if torch.version.cuda else ", this torch is built without CUDA"
            raise DeviceError(f"{requested}: no CUDA GPU is available here{build}: use cpu or auto")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"{requested}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
        return device
    if not torch.backends.mps.is_available():
        raise DeviceError(f"{requested}: Apple's MPS is not available here: use cpu or auto")
    return device


def pick_device(requested: str) -> torch.device:
    """The torch device for DEVICE (see ``resolve_device``), for the engines that run in torch."""
    return _torch().device(str(resolve_device(requested)))


def physical_cores(cpuinfo: str | None = None) -> int:
    """The physical cores this process may run on (hyperthreads not counted), as torch counts its threads.

    Read from /proc/cpuinfo (``cpuinfo``, its text, when given) where it has core ids; elsewhere the logical CPUs.
    """
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return len(allowed)
    cores = set()
    for block in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in fields.items()}
        if "core id" in fields and int(fields.get("processor", -1)) in allowed:
            cores.add((fields.get("physical id"), fields["core id"]))
    return len(cores) or len(allowed)


def _unsupported(requested: str) -> str:
    """Why a device other than cpu, cuda and mps is refused: one torch has (``meta``) or no device at all."""
    try:
        _torch().device(requested)
    except RuntimeError:
        return "not a device name"
    return "not supported"


def _torch():  # noqa: ANN202 - the torch module, imported on first use
    import torch

    return torch


def native_bf16(capabilities: Mapping[str, object] | None = None) -> list[str]:
    """The CPU's instruction sets that compute bf16 natively (empty when it would be emulated).

    ``capabilities`` is ``torch.cpu.get_capabilities()`` unless given.
    """
    flags = _torch().cpu.get_capabilities() if capabilities is None else capabilities
    return [name for flag, name in NATIVE_BF16.items() if flags.get(flag)]


def pick_dtype(requested: str, device: torch.device, capabilities: Mapping[str, object] | None = None) -> torch.dtype:
    """The dtype for DTYPE: ``auto`` is bf16 on CUDA (fp16 without bf16) and on CPUs that compute bf16 natively.

    A CPU computes bf16 natively with AMX or AVX-512 BF16 (``capabilities``, as ``native_bf16`` reads them);
    elsewhere ``auto`` is fp32. The choice on a CPU is logged with its reason.
    """
    torch = _torch()
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


def pick_engine(requested: str, device: Device | torch.device) -> str:
    """The local engine for BACKEND: ``auto`` is CTranslate2 on a CPU (int8 weights, faster there), else transformers.

    CTranslate2 runs on CUDA too when asked for; transformers stays the default on GPUs, where it is measured.
    """
    if requested != "auto":
        return requested
    return "ctranslate2" if device.type == "cpu" else "transformers"


def dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``: the name DTYPE takes."""
    return str(dtype).removeprefix("torch.")
