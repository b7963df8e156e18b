"""Serving benchmark: the bot's batched generator against the naive per-request pool.

Builds ruDialoGPT-small's real shape with random weights (the config and tokenizer in
../shared/rudialogpt-small when present, else GPT-2 small's numbers and a small byte-level BPE tokenizer),
and lets N simulated chats (1, 4, 16, 32) talk to it at once:

- batched: the bot's ReplyGenerator (BatchingPool, SQLite history) on the backend ``--backend`` names,
  loaded as the bot loads it (BACKEND, DTYPE, WORKERS, MAX_BATCH as given; CTranslate2 converts first),
  each message kept in the inbox table until its reply is done, as the bot does (``--backend openai
  --url URL`` asks an OpenAI-compatible server such as vLLM instead, with the prompts built here);
- naive: what the seed projects did, one transformers ``generate()`` per message in a thread pool, fp32.

Each chat takes one of the dialogues in ``dialogues.json`` (cycling): two turns of history, one warm-up
message (not measured), then ``rounds`` messages one after another; all chats run concurrently. For each N
it prints replies/s, new tokens/s (counted from the generated ids up to the stop token), p50/p95 latency
and the event loop's worst lag, for both paths and their ratios. The last line is machine-readable::

    speedup_16=X.XX p95_ratio_16=Y.YY single_ratio=Z.ZZ max_lag_ms=W

(batched over naive throughput and p95 latency at 16 chats, or at the largest N run when 16 was not;
batched over naive median latency at 1 chat, nan if not run; worst loop lag of the batched runs in ms).
Run it from the project's folder as a module:

    python -m bench.serving                            # 1, 4, 16 and 32 chats, the backend BACKEND=auto picks
    python -m bench.serving --quick                    # 1 and 16 chats only
    python -m bench.serving --backend transformers --dtype bfloat16
    python -m bench.serving --device cuda
    python -m bench.serving --backend openai --url http://gpu-box:8000/v1 --model-dir saved_model
    python -m bench.serving --profanity avoid         # PROFANITY=avoid against allow at 16 chats (bench/profanity.py)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ctranslate2
import torch
from transformers.utils import logging as transformers_logging

from bench.batched import BatchedProcess
from bench.workload import DIALOGUES, HISTORY_WINDOW, CallLog, RunStats, inbox_cost, instrument, run_workload
from errors import ReplyTimeoutError
from generator import load_models
from inference.backend import Request
from inference.devices import NATIVE_BF16, pick_engine, resolve_device
from inference.dialogue import FIRST_SPEAKER, SECOND_SPEAKER, merge_turns
from inference.sampling import MODEL_CARD, with_values
from inference.transformers_backend import TransformersBackend
from settings import Settings
from store import BOT_AUTHOR, ChatReply, ChatStore, Turn

ROOT = Path(__file__).resolve().parent.parent
SHARED_MODEL = ROOT.parent / "shared" / "rudialogpt-small"
# GPT-2 small's numbers, which ruDialoGPT-small shares (used when ../shared is absent).
GPT2_SMALL = {"n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 2048, "vocab_size": 50261}
DEFAULT_CHATS = (1, 4, 16, 32)
QUICK_CHATS = (1, 16)
# Measured rounds per chat count: more for few chats (cheap, and their median needs samples).
DEFAULT_ROUNDS = {1: 10, 4: 3, 16: 3, 32: 2}

# The local engines --backend takes (BACKEND=openai is a remote server, measured by its own tools).
ENGINES = ("ctranslate2", "transformers", "openai")
# CPU flags worth printing next to the figures: what the engines' matrix products can use.
CPU_FLAGS = ("avx2", "avx512_f", "avx512_vnni", *NATIVE_BF16, "amx_int8")


class NaivePool:
    """What the seed projects did: one ``generate()`` per message on a thread pool, no batching.

    Keeps the same history (SQLite, merged turns, CONTEXT_TURNS) and deadline as the bot, so only
    the serving differs.
    """

    def __init__(self, model: TransformersBackend, store: ChatStore, settings: Settings, workers: int) -> None:
        self._model = model
        self._store = store
        self._settings = settings
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="naive")

    async def reply(self, chat_id: int, text: str, author: str) -> ChatReply:
        """Generate a reply to ``text`` on its own, in the pool."""
        clean = self._model.clean_user_text(text)
        history = self._store.recent_turns(chat_id, HISTORY_WINDOW)
        turns = merge_turns([*history, Turn(author, clean)])[-self._settings.context_turns :]
        sampling = with_values(MODEL_CARD, self._settings.sampling_overrides("chat"))
        request = Request(tuple(turns), time.monotonic() + self._settings.generation_timeout, sampling)
        loop = asyncio.get_running_loop()
        (outcome,) = await loop.run_in_executor(self._executor, self._model.generate, [request])
        if outcome.timed_out:
            raise ReplyTimeoutError(f"generation for chat {chat_id} ran past {self._settings.generation_timeout} s")
        if not outcome.text:
            return ChatReply("")
        return ChatReply(outcome.text, (Turn(author, clean), Turn(BOT_AUTHOR, outcome.text)))

    def remember(self, chat_id: int, reply: ChatReply) -> None:
        """Store both turns as the bot does once its reply is sent."""
        self._store.add_turns(chat_id, list(reply.turns))

    def shutdown(self) -> None:
        """Stop the pool."""
        self._executor.shutdown(wait=True)


@dataclass
class BenchReport:
    """Every run and the final machine-readable line."""

    runs: list[RunStats]
    final_line: str


def build_model(directory: Path, shared: Path = SHARED_MODEL) -> Path:
    """Write a random-weight model of ruDialoGPT-small's shape and a tokenizer with its speaker tokens.

    The LM head is untied from the embeddings (the same compute per token as the tied real model):
    a tied random model mostly echoes its last input token, the bot's speaker token, and stops at once.
    """
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    if (shared / "config.json").is_file() and (shared / "tokenizer_config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(shared)
        config = GPT2Config.from_pretrained(shared)
    else:
        tokenizer = _small_tokenizer()
        config = GPT2Config(
            **GPT2_SMALL,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    config.tie_word_embeddings = False
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _small_tokenizer() -> object:
    """A byte-level BPE tokenizer trained on the benchmark's dialogues, with the ruDialoGPT special tokens."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        [line for dialogue in DIALOGUES for line in dialogue] * 4,
        vocab_size=2000,
        min_frequency=1,
        special_tokens=["<pad>", "<|endoftext|>"],
    )
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.add_tokens([FIRST_SPEAKER, SECOND_SPEAKER])
    return tokenizer


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def print_table(batched: RunStats, naive: RunStats, engines: dict[str, str]) -> None:
    """Both paths at one chat count, what each runs on (``engines``: path to backend summary) and their ratios."""
    print(f"\n== {batched.chats} chat(s), {batched.rounds} measured message(s) each (after a warm-up round) ==")
    print("; ".join(f"{path}: {summary}" for path, summary in engines.items()))
    print(
        f"{'path':<8} {'replies':>7} {'errors':>6} {'wall s':>7} {'replies/s':>9} {'tokens/s':>8} {'p50 s':>6} "
        f"{'p95 s':>6} {'max lag ms':>10} {'batch':>5} {'gen s':>6} {'prompt tok':>10}"
    )
    for run in (batched, naive):
        print(
            f"{run.path:<8} {run.replies:>7} {run.errors:>6} {run.seconds:>7.1f} {run.replies_per_second:>9.2f} "
            f"{run.tokens_per_second:>8.1f} {run.p50:>6.2f} {run.p95:>6.2f} {run.worst_lag * 1000:>10.1f} "
            f"{run.mean_batch:>5.1f} {run.generate_seconds:>6.2f} {run.prompt_tokens:>10.1f}"
        )
    print(
        f"batched/naive: throughput {_ratio(batched.replies_per_second, naive.replies_per_second):.2f}x, "
        f"tokens/s {_ratio(batched.tokens_per_second, naive.tokens_per_second):.2f}x, "
        f"p50 latency {_ratio(batched.p50, naive.p50):.2f}, p95 latency {_ratio(batched.p95, naive.p95):.2f}"
    )


def final_line(runs: Sequence[RunStats], peak_mb: float) -> str:
    """``speedup_16=… p95_ratio_16=… single_ratio=… max_lag_ms=… speedup_32=… rss_mb=…``.

    speedup and p95_ratio at 16 chats, or at the largest N run when 16 was not; single_ratio and speedup_32 are
    nan when 1 or 32 chats were not run; rss_mb is the batched path's process's peak resident memory.
    """
    by_key = {(run.path, run.chats): run for run in runs}
    counts = sorted({run.chats for run in runs})
    many = 16 if 16 in counts else counts[-1]

    def speedup(count: int) -> float:
        if count not in counts:
            return math.nan
        return _ratio(by_key["batched", count].replies_per_second, by_key["naive", count].replies_per_second)

    p95_ratio = _ratio(by_key["batched", many].p95, by_key["naive", many].p95)
    single_ratio = _ratio(by_key["batched", 1].p50, by_key["naive", 1].p50) if 1 in counts else math.nan
    max_lag = max(run.worst_lag for run in runs if run.path == "batched") * 1000
    return (
        f"speedup_{many}={speedup(many):.2f} p95_ratio_{many}={p95_ratio:.2f} "
        f"single_ratio={single_ratio:.2f} max_lag_ms={max_lag:.0f} speedup_32={speedup(32):.2f} rss_mb={peak_mb:.0f}"
    )


def chat_counts(text: str) -> tuple[int, ...]:
    """``--chats``: comma-separated whole numbers of 1 or more, e.g. ``1,16``."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected chat counts such as 1,16 (whole numbers from 1), got {text!r}")
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only 1 and 16 chats")
    parser.add_argument("--chats", type=chat_counts, help="chat counts, e.g. 1,16")
    parser.add_argument(
        "--rounds", type=int, help="measured messages per chat (default: 10 for 1 chat, 3 up to 16, 2 above)"
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="MAX_NEW_TOKENS for both paths (default 32)")
    parser.add_argument(
        "--backend",
        choices=ENGINES,
        help="BACKEND of the batched path (default: what BACKEND=auto picks here, ctranslate2 on a CPU)",
    )
    parser.add_argument(
        "--max-batch", type=int, help="MAX_BATCH of the batched path (default: the engine's measured one)"
    )
    parser.add_argument("--workers", type=int, default=Settings.workers, help="WORKERS of the batched path")
    parser.add_argument("--window-ms", type=float, help="BATCH_WINDOW_MS (default: the engine's measured one)")
    parser.add_argument("--naive-workers", type=int, default=2, help="threads of the naive pool (default 2)")
    parser.add_argument("--device", default=Settings.device, help="DEVICE for both paths (auto, cpu, cuda)")
    parser.add_argument("--dtype", default=Settings.dtype, help="DTYPE of the batched path (the naive one is float32)")
    parser.add_argument("--timeout", type=float, default=Settings.generation_timeout, help="GENERATION_TIMEOUT, s")
    parser.add_argument("--lag-tick-ms", type=float, default=10.0, help="period of the loop-lag ticker (default 10)")
    parser.add_argument("--model-dir", type=Path, help="use this model directory instead of building the real shape")
    parser.add_argument("--url", help="with --backend openai: the server's /v1 URL (INFERENCE_URL)")
    parser.add_argument("--api-key", default="", help="with --backend openai: INFERENCE_API_KEY")
    parser.add_argument("--served-model", default="", help="with --backend openai: INFERENCE_MODEL")
    parser.add_argument(
        "--profanity",
        choices=("avoid",),
        help="instead: the batched path with PROFANITY=avoid against allow, on a model that swears in half its replies",
    )
    args = parser.parse_args(argv)
    if args.backend == "openai" and not args.url:
        parser.error("--backend openai needs --url, e.g. http://gpu-box:8000/v1")
    return args


def cpu_line() -> str:
    """The CPU's model, cores and the flags that matter to the engines, as torch reads them."""
    capabilities = torch.cpu.get_capabilities()
    flags = " ".join(flag for flag in CPU_FLAGS if capabilities.get(flag)) or "none of " + ", ".join(CPU_FLAGS)
    return (
        f"CPU: {capabilities.get('cpu_name', '?')}, {capabilities.get('num_physical_cores', '?')} physical cores, "
        f"{os.cpu_count()} logical; flags: {flags}"
    )


@contextmanager
def _model_dir(given: Path | None) -> Iterator[tuple[Path, str]]:
    """The model directory to use and where it came from (built in a temp directory unless given)."""
    if given is not None:
        yield given, str(given)
        return
    with tempfile.TemporaryDirectory(prefix="bench_model_") as directory:
        started = time.perf_counter()
        build_model(Path(directory))
        shared = (SHARED_MODEL / "tokenizer_config.json").is_file()
        source = "random weights, " + (
            f"config and tokenizer of {SHARED_MODEL}" if shared else "GPT-2 small's shape, a small BPE tokenizer"
        )
        print(f"built the model ({source}) in {time.perf_counter() - started:.1f} s")
        yield Path(directory), source


def batched_settings(args: argparse.Namespace, model_dir: Path, db_dir: Path) -> Settings:
    """The batched path's settings, as the bot would read them."""
    return Settings(
        model_path=str(model_dir),
        backend=args.backend or pick_engine("auto", resolve_device(args.device)),
        inference_url=args.url or "",
        inference_api_key=args.api_key,
        inference_model=args.served_model,
        device=args.device,
        dtype=args.dtype,
        max_batch=args.max_batch,
        workers=args.workers,
        batch_window_ms=args.window_ms,
        max_new_tokens=args.new_tokens,
        generation_timeout=args.timeout,
        db_path=str(db_dir / "batched.sqlite3"),
    )


def _bench(args: argparse.Namespace, base: Settings, source: str) -> BenchReport:
    """Both paths at each chat count, batched (in its own process) then naive (here), and the final line."""
    chats = args.chats or (QUICK_CHATS if args.quick else DEFAULT_CHATS)
    naive_settings = replace(base, dtype="float32", db_path=str(Path(base.db_path).with_name("naive.sqlite3")))
    naive_model = TransformersBackend(base.model_path, device=base.device, dtype="float32")
    naive_log = instrument(naive_model)
    started = time.perf_counter()
    batched = BatchedProcess(base)
    runs: list[RunStats] = []
    naive_store = ChatStore(naive_settings.db_path)
    try:
        engines = {"batched": batched.summary, "naive": naive_model.summary}
        config = naive_model.model.config
        print(
            f"{cpu_line()}\n"
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), ctranslate2 {ctranslate2.__version__}, "
            f"load average {os.getloadavg()[0]:.2f}\n"
            f"model: {naive_model.parameters / 1e6:.1f}M parameters ({source}), "
            f"{config.n_layer} layers x {config.n_embd}, vocab {config.vocab_size}\n"
            f"batched: {engines['batched']}, WORKERS={base.workers}, MAX_BATCH={batched.tuning.max_batch}, "
            f"BATCH_WINDOW_MS={batched.tuning.batch_window_ms:g}, in a process of its own (loaded and warmed up in "
            f"{batched.load_seconds:.1f} s; torch {'imported' if batched.torch_loaded else 'not imported'})\n"
            f"naive: {engines['naive']}, one generate() per message, {args.naive_workers} pool threads\n"
            f"both: {with_values(MODEL_CARD, base.sampling_overrides('chat'))}, CONTEXT_TURNS={base.context_turns}, "
            f"chats {list(chats)}\n"
            "columns: batch = mean rows per generation call, gen s = mean seconds per call, prompt tok = mean prompt "
            f"length; loop lag sampled every {args.lag_tick_ms:g} ms\n"
            f"inbox: one insert and one update in the database per message, "
            f"{inbox_cost(Path(base.db_path).with_name('inbox-cost.sqlite3')):.2f} ms each (median of 500)"
        )
        naive_model.generate([Request(("привет",), time.monotonic() + 60, MODEL_CARD, naive_model.name)])
        print(f"start-up and warm-up took {time.perf_counter() - started:.1f} s")
        tick = args.lag_tick_ms / 1000
        for count in chats:
            rounds = args.rounds or DEFAULT_ROUNDS.get(count, 2 if count > 16 else 3)
            workload = {"chats": count, "rounds": rounds, "first_chat_id": count * 1000, "lag_tick": tick}
            batched_run = batched.run(**workload)
            naive = NaivePool(naive_model, naive_store, naive_settings, args.naive_workers)
            naive_run = asyncio.run(_naive_run(naive, naive_store, naive_log, workload))
            print_table(batched_run, naive_run, engines)
            runs += [batched_run, naive_run]
        peak = batched.peak_mb()
    finally:
        batched.close()
        naive_store.close()
    return BenchReport(runs, final_line(runs, peak))


async def _naive_run(naive: NaivePool, store: ChatStore, log: CallLog, workload: dict[str, Any]) -> RunStats:
    """The naive path on one workload, in a pool of its own that ends with it.

    A fresh pool per run whose threads end with it: torch's OpenMP throttles its spin-waits while more OpenMP
    threads exist than cores, so idle naive threads would slow the next batched run.
    """
    try:
        return await run_workload(path="naive", server=naive, store=store, log=log, **workload)
    finally:
        naive.shutdown()


def main(argv: Sequence[str] | None = None) -> BenchReport:
    """Run the benchmark, print the tables and the final line, and return them."""
    args = parse_args(argv)
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    if args.profanity:
        from bench.profanity import avoid_report  # it imports this module

        return avoid_report(args)
    started = time.perf_counter()
    with _model_dir(args.model_dir) as (model_dir, source), tempfile.TemporaryDirectory(prefix="bench_db_") as db_dir:
        base = batched_settings(args, model_dir, Path(db_dir))
        loading = time.perf_counter()
        # As the bot loads it: CTranslate2 converts here (so the batched path's process finds the conversion made, as
        # a restart does, and its memory is a restart's), a server is checked here.
        loaded, _ = load_models(base)
        print(f"loaded the batched path's model in {time.perf_counter() - loading:.1f} s: {loaded.summary}")
        del loaded
        report = _bench(args, base, source)
    print(f"\ntotal {time.perf_counter() - started:.0f} s, load average now {os.getloadavg()[0]:.2f}")
    print(report.final_line)
    return report


if __name__ == "__main__":
    main()
