"""Convert a transformers GPT-2 model to CTranslate2 once, and find that conversion again at the next start.

Conversions live in a cache folder (next to the bot's database), one folder per model version and
number format: ``<name>-<quantization>-<fingerprint>``. The fingerprint is a digest of the model's
files, so a model that train.py wrote again is converted again, and the conversion it replaces is
removed (the log says so).

A conversion is written into a partial folder of its own and renamed into place when complete, and
its process holds a file lock on the partial folder meanwhile. So a conversion cut off (a kill, an OOM,
a redeploy) leaves a partial folder whose lock nobody holds: the next start removes it, while the
partial folder of a conversion another live process is making (a second bot or console on the same
data folder) is left alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import ctranslate2
from filelock import FileLock, Timeout
from transformers.utils import logging as transformers_logging

from inference.backend import ModelLoadError

logger = logging.getLogger(__name__)

# Bump when the conversion itself changes, so that conversions made by an older bot are made again.
CONVERSION_FORMAT = 1
# The files a model consists of (weights, config, tokenizer); anything else in its folder does not count.
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")
# Written into each conversion: what it was made from, so that an outdated one can be recognised.
SOURCE_FILE = "source.json"
# In the name of a conversion being written: ``.<target>.partial-<token>``, and its lock ``<that>.lock``.
PARTIAL = ".partial-"
LOCK_SUFFIX = ".lock"


def local_model_dir(path: str) -> Path:
    """The folder that holds the model's files: ``path`` itself, or a hub model's downloaded snapshot."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(path, allow_patterns=[f"*{suffix}" for suffix in MODEL_FILE_SUFFIXES]))
    except Exception as error:  # noqa: BLE001 - offline, unknown repo, network: each is one line for the user
        raise ModelLoadError(f"could not download {path} to convert it: {error}") from None


def model_fingerprint(model_dir: Path) -> str:
    """A digest of the model's files (names and contents) and of the converter: any change gives another one."""
    digest = hashlib.sha256(f"ctranslate2 {ctranslate2.__version__}, format {CONVERSION_FORMAT}".encode())
    for file in sorted(model_dir.iterdir()):
        if file.is_file() and file.suffix in MODEL_FILE_SUFFIXES:
            with file.open("rb") as handle:
                digest.update(file.name.encode() + b"\0" + hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def converted_model(
    path: str, cache_dir: Path, quantization: str, vocabulary: Mapping[str, int], fallback_token: str
) -> Path:
    """The folder of the CTranslate2 conversion of the model at ``path`` in ``quantization``, made now if need be.

    ``vocabulary`` is the tokenizer's (token: id) and ``fallback_token`` stands in for special tokens the
    model's table lacks (see inference.ct2_converter). The converter, and torch with it, is imported only to convert.
    """
    source_dir = local_model_dir(path)
    source = str(Path(path).resolve()) if Path(path).is_dir() else path
    name = source_dir.resolve().name if Path(path).is_dir() else path.replace("/", "--")
    target = cache_dir / f"{name}-{quantization}-{model_fingerprint(source_dir)}"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        remove_abandoned_conversions(cache_dir)
    except OSError as error:
        raise ModelLoadError(f"could not use {cache_dir} for CTranslate2 conversions: {error}") from None
    if (target / "model.bin").is_file():
        logger.info("%s: using its CTranslate2 conversion in %s, made earlier", path, target)
        return target
    logger.info("converting %s to CTranslate2 (%s) into %s, once for this version of it", path, quantization, target)
    started = time.perf_counter()
    partial = cache_dir / f".{target.name}{PARTIAL}{secrets.token_hex(6)}"
    from inference.ct2_converter import TrimmedVocabularyConverter  # imports torch: only when converting

    converter = TrimmedVocabularyConverter(str(source_dir), vocabulary, fallback_token)
    transformers_logging.disable_progress_bar()  # the converter loads the model with from_pretrained
    try:
        # Held until the partial folder is gone: a lock nobody holds marks a partial folder as abandoned.
        with _holding(_lock_of(partial)):
            try:
                converter.convert(str(partial), quantization=quantization, force=True)
                record = {"source": source, "quantization": quantization, "dropped_tokens": converter.dropped}
                (partial / SOURCE_FILE).write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
                _publish(partial, target)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    except Exception as error:  # noqa: BLE001 - whatever the converter raises, the user gets one line
        raise ModelLoadError(
            f"could not convert {path} to CTranslate2 in {cache_dir}: {type(error).__name__}: {error} "
            "(BACKEND=transformers runs the model without converting it)"
        ) from None
    if converter.dropped:
        logger.info(
            "%s: the conversion leaves out %s, listed by the tokenizer past the model's embedding table",
            path,
            ", ".join(converter.dropped),
        )
    logger.info("converted %s in %.1f s", path, time.perf_counter() - started)
    _remove_outdated(cache_dir, target, source, quantization)
    return target


def remove_abandoned_conversions(cache_dir: Path) -> None:
    """Delete the partial folders (and lock files) of conversions whose process ended before it finished.

    A partial folder whose lock another process holds is being written now and stays.
    """
    names = (entry.name for entry in cache_dir.iterdir())
    partials = {name.removesuffix(LOCK_SUFFIX) for name in names if name.startswith(".") and PARTIAL in name}
    for name in sorted(partials):
        partial = cache_dir / name
        try:
            # A dead process holds no lock; a live one's makes this raise Timeout at once.
            with _holding(_lock_of(partial), blocking=False):
                if not partial.exists():
                    continue  # only the lock file of a process that ended before it wrote anything
                shutil.rmtree(partial, ignore_errors=True)
        except Timeout:
            continue
        logger.info("removed %s, left by a CTranslate2 conversion that was cut off", partial)


def _lock_of(partial: Path) -> Path:
    return partial.with_name(partial.name + LOCK_SUFFIX)


@contextlib.contextmanager
def _holding(lock_file: Path, *, blocking: bool = True) -> Iterator[None]:
    """Hold the lock of ``lock_file``, and delete the file before letting go: nobody needs it after.

    A process that opened the file meanwhile finds its inode gone once it gets the lock, and filelock tries again.
    """
    with FileLock(lock_file, blocking=blocking):
        try:
            yield
        finally:
            # On Windows a file another process has open stays; the next start tries again.
            with contextlib.suppress(OSError):
                lock_file.unlink(missing_ok=True)


def _publish(partial: Path, target: Path) -> None:
    """Move a finished conversion into place; another process that finished first wins."""
    try:
        partial.rename(target)
    except OSError:
        if not (target / "model.bin").is_file():
            raise


def _remove_outdated(cache_dir: Path, keep: Path, source: str, quantization: str) -> None:
    """Delete this program's earlier conversions of the same model in the same format, saying so."""
    for folder in cache_dir.iterdir():
        # Partial folders (another process's conversion, about to be renamed) are not earlier conversions.
        if folder == keep or folder.name.startswith(".") or not (folder / SOURCE_FILE).is_file():
            continue
        try:
            record = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("source") == source and record.get("quantization") == quantization:
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("removed %s, the conversion of an earlier version of %s", folder, source)
