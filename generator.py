"""The model side of the bot: load ruDialoGPT once, generate replies in batches off the event loop.

Nothing here imports aiogram; main.py wires this to the handlers.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, StoppingCriteria
from transformers.utils import logging as transformers_logging

import texts
from batching import BatchingPool
from dialogue import SpecialTokens, build_prompt, clean_reply, merge_turns, reply_ids, sanitize
from errors import EmptyMessageError, ReplyTimeoutError
from settings import Settings
from store import BOT_AUTHOR, ChatStore, Turn

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# Stored turns read per chat: enough for any CONTEXT_TURNS once consecutive turns are merged.
_HISTORY_WINDOW = 64


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says where it was looked for and what to do."""


# What each of settings.STYLES changes: "lively" is the configured (model card) sampling.
STYLE_OVERRIDES: dict[str, dict[str, float]] = {
    "lively": {},
    "calm": {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3},
}


@dataclass(frozen=True)
class Request:
    """One reply to generate: the dialogue turns (oldest first), when to give up, and the sampling style."""

    turns: tuple[str, ...]
    deadline: float
    style: str = "lively"


@dataclass(frozen=True)
class Outcome:
    """A generated reply (possibly empty) and whether the deadline cut it short."""

    text: str
    timed_out: bool = False


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


def _check_model_path(model_path: str) -> None:
    if Path(model_path).exists() or _HUB_ID.match(model_path):
        return
    raise ModelLoadError(
        f"no model at {Path(model_path).resolve()}: train one with `python train.py --data CHAT.csv --out "
        f"{model_path}`, or set MODEL_PATH to a model directory or a hub id such as tinkoff-ai/ruDialoGPT-small"
    )


class _Deadlines(StoppingCriteria):
    """Stops each row of a batch at its own deadline, so a slow generation really ends in the worker."""

    def __init__(self, deadlines: Sequence[float]) -> None:
        self._deadlines = torch.tensor(deadlines, dtype=torch.float64)
        self.hit = torch.zeros(len(deadlines), dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object) -> torch.BoolTensor:
        self.hit |= self._deadlines <= time.monotonic()
        return self.hit.to(input_ids.device)


class TopKSampler(LogitsProcessor):
    """Draws each row's next token among its ``top_k`` likeliest, then leaves only that token to a greedy pick.

    The same distribution as transformers' temperature, top-k and top-p warpers followed by sampling,
    but the softmax, the top-p sort and the draw run over k candidates instead of the whole vocabulary:
    with 16 rows of ruDialoGPT's 50k tokens that saves about a fifth of each decoding step on a CPU.
    """

    def __init__(self, top_k: int, top_p: float, temperature: float) -> None:
        self.top_k = top_k
        self.top_p = top_p
        self.temperature = temperature

    def candidates(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's candidate token ids, likeliest first, and their probabilities (zero past top_p)."""
        top_scores, top_ids = scores.topk(min(self.top_k, scores.shape[-1]), dim=-1)
        probs = torch.softmax(top_scores.float() / self.temperature, dim=-1)
        # A candidate stays while the likelier ones hold less than top_p of the mass; the first always stays.
        return top_ids, probs.masked_fill(probs.cumsum(-1) - probs >= self.top_p, 0.0)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids, probs = self.candidates(scores)
        chosen = ids.gather(-1, torch.multinomial(probs, 1))
        return torch.full_like(scores, float("-inf")).scatter_(-1, chosen, 0.0)


def fast_sampling(config: GenerationConfig) -> tuple[GenerationConfig, list[LogitsProcessor]]:
    """``config`` with top-k sampling moved into a TopKSampler; configs without top-k pass unchanged."""
    if not (config.do_sample and config.top_k):
        return config, []
    sampler = TopKSampler(config.top_k, config.top_p or 1.0, config.temperature or 1.0)
    values = config.to_diff_dict()
    for key in ("do_sample", "top_k", "top_p", "temperature"):
        values.pop(key, None)
    return GenerationConfig(**values, do_sample=False), [sampler]


class ReplyModel:
    """A loaded tokenizer and model that turn batches of dialogues into replies (runs in a worker)."""

    def __init__(self, settings: Settings) -> None:
        _check_model_path(settings.model_path)
        started = time.perf_counter()
        transformers_logging.disable_progress_bar()
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(settings.dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(settings.model_path)
            model = AutoModelForCausalLM.from_pretrained(settings.model_path, dtype=self.dtype)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the model from {settings.model_path}: {error}") from None
        self.model = model.to(self.device).eval()
        try:
            self.tokens = SpecialTokens.from_tokenizer(self.tokenizer)
        except ValueError as error:
            raise ModelLoadError(f"{settings.model_path}: {error}") from None
        self.name = settings.model_path
        self.load_seconds = time.perf_counter() - started
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self._max_prompt = self.model.config.n_positions - settings.max_new_tokens
        base = GenerationConfig(
            do_sample=True,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
            no_repeat_ngram_size=settings.no_repeat_ngram_size,
            eos_token_id=list(self.tokens.speakers),
            pad_token_id=self.tokens.pad,
            # The pad token is never a word of a reply; batched rows are padded with it.
            suppress_tokens=[self.tokens.pad],
            # A preallocated cache spares each step a copy of the whole cache (a tenth of a step at 16 rows on a
            # CPU); compiling for it would recompile for every new batch and prompt size.
            cache_implementation="static",
            disable_compile=True,
        )
        self.generation_configs = {
            style: GenerationConfig(**{**base.to_diff_dict(), **overrides})
            for style, overrides in STYLE_OVERRIDES.items()
        }
        logger.info(
            "loaded %s in %.1f s: %s, %s, %.1fM parameters",
            self.name,
            self.load_seconds,
            self.device,
            str(self.dtype).removeprefix("torch."),
            self.parameters / 1e6,
        )

    def clean_user_text(self, text: str) -> str:
        """The user's text without special tokens or invisible characters."""
        return sanitize(text, self.tokens.forbidden_texts)

    def generate(self, requests: Sequence[Request], generation: GenerationConfig | None = None) -> list[Outcome]:
        """Generate one reply per request in a single batched ``generate()`` call (all of one style)."""
        rows, timed_out = self.generate_ids(requests, generation)
        return [Outcome(self._decode(row), hit) for row, hit in zip(rows, timed_out, strict=True)]

    def generate_ids(
        self, requests: Sequence[Request], generation: GenerationConfig | None = None
    ) -> tuple[list[list[int]], list[bool]]:
        """The new token ids of each request's row (pads included) and whether its deadline cut it."""
        prompts = [
            build_prompt(self.tokenizer, self.tokens, request.turns, len(request.turns), self._max_prompt)
            for request in requests
        ]
        width = max(map(len, prompts))
        # Left padding keeps every prompt's last token next to the first generated one.
        input_ids = torch.tensor([[self.tokens.pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        deadlines = _Deadlines([request.deadline for request in requests])
        config, processors = fast_sampling(generation or self.generation_configs[requests[0].style])
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=[deadlines],
            )
        return output[:, width:].tolist(), deadlines.hit.tolist()

    def _decode(self, row: Sequence[int]) -> str:
        text = self.tokenizer.decode(reply_ids(row, self.tokens), skip_special_tokens=True)
        return clean_reply(text, self.tokens.forbidden_texts)


class ReplyGenerator:
    """Replies to chats: keeps each chat's history and batches generation in a bounded pool."""

    def __init__(self, model: ReplyModel, store: ChatStore, settings: Settings) -> None:
        self.model = model
        self._store = store
        self._timeout = settings.generation_timeout
        self._default_context_turns = settings.context_turns
        self._default_style = settings.reply_style
        self._pool: BatchingPool[Request, Outcome] = BatchingPool(
            model.generate,
            workers=settings.workers,
            max_batch=settings.max_batch,
            window=settings.batch_window_ms / 1000,
            max_pending=settings.max_pending,
        )

    @property
    def pending(self) -> int:
        """Replies queued or being generated."""
        return self._pool.pending

    def warm_up(self) -> None:
        """Run one short generation so the first user doesn't pay for lazy initialisation."""
        started = time.perf_counter()
        self._pool.run_sync([Request(("привет",), time.monotonic() + 60)])
        logger.info("warm-up generation took %.2f s", time.perf_counter() - started)

    async def reply(self, chat_id: int, text: str, author: str) -> str:
        """Reply to ``text`` from ``author`` in ``chat_id``; both turns are stored only if a reply was made.

        Callers handle one chat's messages one at a time (middlewares.ChatOrder) so its history stays
        in order. Raises EmptyMessageError, BusyError (queue full) and ReplyTimeoutError. An empty
        generation gives a fallback phrase, which is not stored.
        """
        clean = self.model.clean_user_text(text)
        if not clean:
            raise EmptyMessageError(text)
        preferences = self._store.preferences(chat_id)
        context_turns = preferences.context_turns or self._default_context_turns
        history = self._store.recent_turns(chat_id, _HISTORY_WINDOW)
        turns = merge_turns([*history, Turn(author, clean)])[-context_turns:]
        style = preferences.style if preferences.style in STYLE_OVERRIDES else self._default_style
        request = Request(tuple(turns), time.monotonic() + self._timeout, style)
        outcome = await self._pool.submit(request, key=style)
        if outcome.timed_out:
            raise ReplyTimeoutError(f"generation for chat {chat_id} ran past {self._timeout} s")
        if not outcome.text:
            return texts.FALLBACK_REPLY
        self._store.add_turns(chat_id, [Turn(author, clean), Turn(BOT_AUTHOR, outcome.text)])
        return outcome.text

    def forget(self, chat_id: int) -> None:
        """Clear the chat's history."""
        self._store.clear(chat_id)

    def shutdown(self) -> None:
        """Let running generations finish and stop the pool."""
        self._pool.shutdown()
