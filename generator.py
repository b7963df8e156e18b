"""The model side of the bot: load the backend once, keep each chat's history, batch generation off the event loop.

Nothing here imports aiogram; main.py wires this to the handlers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from errors import BusyError, EmptyMessageError, ReplyTimeoutError
from inference.backend import Backend, LocalBackend, ModelLoadError, Outcome, RemoteBackend, Request
from inference.batching import BatchingPool, ConcurrentRunner
from inference.ctranslate2_backend import CTranslate2Backend
from inference.devices import pick_engine, resolve_device
from inference.dialogue import merge_turns
from inference.modes import CHAT, TASKS, request_turn
from inference.openai_backend import OpenAIBackend
from inference.profanity import ALLOW, AVOID, ProfanityFilter, read_word_list
from inference.progress import ReplyProgress
from inference.sampling import STYLES, TASK_DEFAULTS, Sampling, with_values
from inference.tuning import UNMEASURED, Tuning, tuning_for
from settings import Settings
from store import BOT_AUTHOR, ChatReply, ChatStore, Turn

logger = logging.getLogger(__name__)

# Stored turns read per chat: enough for any CONTEXT_TURNS once consecutive turns are merged.
_HISTORY_WINDOW = 64
# The fewest prompt tokens a task's new-token limit must leave in the model's positions.
MIN_PROMPT_TOKENS = 16
# PROFANITY=avoid: how many times a text is generated at most before its obscene words are masked.
AVOID_TRIES = 3


@dataclass(frozen=True)
class TaskModel:
    """The model that does one task and how it samples there."""

    backend: Backend
    sampling: Sampling


def task_sampling(task: str, backend: Backend, settings: Settings) -> Sampling:
    """A task's sampling: the task's defaults, then the model's own generation config, then the settings.

    The model's generation_config.json counts only for the task it was trained for (a chat model asked
    for a toast keeps the toast defaults). A new-token limit that would leave no room for a prompt is a
    config error when it was set, and is cut to fit (with a warning) when it came from a default.
    """
    sampling = TASK_DEFAULTS[task]
    if backend.task == task or (task == CHAT and backend.task is None):
        sampling = with_values(sampling, backend.generation_defaults)
    overrides = settings.sampling_overrides(task)
    sampling = with_values(sampling, overrides)
    fits = backend.max_positions - MIN_PROMPT_TOKENS
    if sampling.max_new_tokens <= fits:
        return sampling
    setting = settings.max_new_tokens_setting(task)
    if overrides.get("max_new_tokens") is not None:
        raise ModelLoadError(
            f"{setting}={sampling.max_new_tokens} leaves no room for a prompt in the {backend.max_positions} positions "
            f"of {backend.name}: set it to at most {fits}"
        )
    logger.warning(
        "%s: %d new tokens for %s do not fit its %d positions; using %d (set %s to choose)",
        backend.name,
        sampling.max_new_tokens,
        task,
        backend.max_positions,
        fits,
        setting,
    )
    return with_values(sampling, {"max_new_tokens": fits})


def load_models(settings: Settings) -> tuple[Backend, dict[str, Backend]]:
    """The chat model and each other task's model, each directory loaded once however many tasks name it.

    With BACKEND=openai the inference server's model does every task; MODEL_PATH gives the tokenizer.
    CTranslate2 keeps its conversions in a ``ct2`` folder next to the database.
    """
    if settings.backend == "openai":
        remote = OpenAIBackend(
            settings.inference_url,
            tokenizer_path=settings.model_path,
            model=settings.inference_model,
            api_key=settings.inference_api_key,
        )
        return remote, {}
    loaded: dict[str, Backend] = {}
    device = resolve_device(settings.device)
    engine = pick_engine(settings.backend, device)

    def load(path: str) -> Backend:
        key = str(Path(path).resolve()) if Path(path).exists() else path
        if key not in loaded:
            loaded[key] = local_backend(engine, path, settings)
        return loaded[key]

    chat = load(settings.model_path)
    tasks = {task: load(settings.model_path_for(task)) for task in TASKS if task != CHAT}
    if settings.backend == "auto":
        logger.info("BACKEND=auto: %s on %s", engine, device)
    return chat, tasks


def local_backend(engine: str, path: str, settings: Settings) -> Backend:
    """The model at ``path`` loaded by ``engine`` (ctranslate2 or transformers) as the settings say."""
    if engine == "ctranslate2":
        return CTranslate2Backend(
            path,
            cache_dir=Path(settings.db_path).parent / "ct2",
            device=settings.device,
            dtype=settings.dtype,
            workers=settings.workers,
        )
    # Imported here: it imports torch, which a CTranslate2 bot never needs.
    from inference.transformers_backend import TransformersBackend

    return TransformersBackend(path, device=settings.device, dtype=settings.dtype)


def serving_tuning(model: Backend, settings: Settings) -> Tuning:
    """MAX_BATCH and BATCH_WINDOW_MS: as set, else what was measured best for the chat model's engine and device."""
    measured = tuning_for(model.engine, model.device.type) if isinstance(model, LocalBackend) else UNMEASURED
    return Tuning(
        max_batch=measured.max_batch if settings.max_batch is None else settings.max_batch,
        batch_window_ms=measured.batch_window_ms if settings.batch_window_ms is None else settings.batch_window_ms,
    )


def describe_models(generator: ReplyGenerator) -> str:
    """One line per task: the model that does it and how it runs (for the admin's notices and /stats)."""
    return "\n".join(f"{task}: {job.backend.name} ({job.backend.summary})" for task, job in generator.tasks.items())


class ReplyGenerator:
    """Chat replies, toasts and horoscopes: keeps each chat's history and batches generation in a bounded pool."""

    def __init__(
        self, model: Backend, store: ChatStore, settings: Settings, task_models: Mapping[str, Backend] | None = None
    ) -> None:
        self.model = model
        self._store = store
        self._timeout = settings.generation_timeout
        self._settings = settings
        backends = {task: (task_models or {}).get(task, model) for task in TASKS}
        self.tasks = {
            task: TaskModel(backend, task_sampling(task, backend, settings)) for task, backend in backends.items()
        }
        self._backends = {backend.name: backend for backend in backends.values()}
        self.tuning = serving_tuning(model, settings)
        self._profanity = ProfanityFilter(read_word_list(settings.blocked_words) if settings.blocked_words else ())
        # A remote server batches on its own: its requests go out from the event loop, no thread pool.
        self._remote = all(isinstance(backend, RemoteBackend) for backend in self._backends.values())
        self._pool: BatchingPool[Request, Outcome] | ConcurrentRunner[Request, Outcome] = (
            ConcurrentRunner(self._agenerate, max_pending=settings.max_pending)
            if self._remote
            else BatchingPool(
                self._generate,
                workers=settings.workers,
                max_batch=self.tuning.max_batch,
                window=self.tuning.batch_window_ms / 1000,
                max_pending=settings.max_pending,
            )
        )

    @property
    def pending(self) -> int:
        """Requests queued or being generated."""
        return self._pool.pending

    @property
    def backends(self) -> list[Backend]:
        """Each loaded model once."""
        return list(self._backends.values())

    def _generate(self, requests: list[Request]) -> list[Outcome]:
        # The pool batches only requests of one model and one sampling (their key).
        return self._backends[requests[0].model].generate(requests)

    async def _agenerate(self, request: Request) -> Outcome:
        return await self._backends[request.model].agenerate(request)

    def warm_up(self) -> None:
        """Run one short generation per local model so the first user doesn't pay for lazy initialisation."""
        if self._remote:
            return  # the server is warm; its start-up check listed its models
        started = time.perf_counter()
        first_task = {job.backend.name: task for task, job in reversed(self.tasks.items())}
        for task in first_task.values():
            self._generate([self._request(task, ("привет",))])
        logger.info("warm-up generations took %.2f s", time.perf_counter() - started)

    def _request(
        self,
        task: str,
        turns: tuple[str, ...],
        sampling: Sampling | None = None,
        progress: ReplyProgress | None = None,
    ) -> Request:
        job = self.tasks[task]
        return Request(turns, time.monotonic() + self._timeout, sampling or job.sampling, job.backend.name, progress)

    async def _submit(self, request: Request, *, background: bool = False) -> Outcome:
        return await self._pool.submit(request, key=(request.model, request.sampling), background=background)

    def profanity_mode(self, chat_id: int) -> str:
        """How the chat takes obscene words (allow, mask or avoid): its /settings choice, else PROFANITY."""
        return self._settings.profanity_for(self._store.preferences(chat_id))

    def apply_profanity(self, text: str, mode: str, *, draft: bool = False) -> str:
        """What a chat of this mode may see of ``text``: as it is under allow, else with obscene words masked.

        A ``draft`` (a reply still being written) also holds back its unfinished last word under mask and avoid.
        """
        if mode == ALLOW:
            return text
        return self._profanity.mask_draft(text) if draft else self._profanity.mask(text)

    async def _generate_clean(self, request: Request, mode: str, *, background: bool = False) -> Outcome:
        """Generate ``request`` and apply the mode: mask stars obscene words, avoid first asks again.

        A first try that timed out is returned as it is, for the caller to raise.
        """
        outcome = await self._submit(request, background=background)
        if mode == ALLOW or outcome.timed_out or not self._profanity.contains(outcome.text):
            return outcome
        # A reply the user stopped is what they saw written: masked, never asked again.
        if mode == AVOID and not outcome.stopped:
            retry = await self._clean_retry(request, background)
            if retry is not None:
                return retry
        return replace(outcome, text=self._profanity.mask(outcome.text))

    async def _clean_retry(self, request: Request, background: bool) -> Outcome | None:
        """Ask again for a text whose first try swore: the first clean try, or None when every one swore.

        The same request goes through the same pool, so retries batch with other requests, keep its deadline
        and stop at a full queue; AVOID_TRIES counts the first try.
        """
        tries = 1
        while tries < AVOID_TRIES and time.monotonic() < request.deadline:
            try:
                retry = await self._submit(request, background=background)
            except BusyError:
                break
            tries += 1
            if retry.timed_out:
                break
            if retry.text and not self._profanity.contains(retry.text):
                logger.debug("profanity: try %d of %d was clean", tries, AVOID_TRIES)
                return retry
        logger.debug("profanity: %d tries swore; masked", tries)
        return None

    async def reply(self, chat_id: int, text: str, author: str, progress: ReplyProgress | None = None) -> ChatReply:
        """Reply to ``text`` from ``author`` in ``chat_id``, in the light of the chat's history.

        The caller sends the reply, then calls ``remember``: the history holds only what its users saw,
        so a message answered again after a crash is not in it twice. Callers handle one chat's messages
        one at a time (bot.middlewares.ChatOrder) so its history stays in order. Raises EmptyMessageError,
        BusyError (queue full) and ReplyTimeoutError. An empty generation gives ``ChatReply("")``, which
        stores nothing: the caller picks what to say instead. ``progress`` sees the reply while it is written and
        may stop it: the reply is then what was written so far (``stopped`` set).
        """
        clean = self.model.clean_user_text(text)
        if not clean:
            raise EmptyMessageError(text)
        preferences = self._store.preferences(chat_id)
        context_turns, style = self._settings.chat_choices(preferences)
        history = self._store.recent_turns(chat_id, _HISTORY_WINDOW)
        turns = merge_turns([*history, Turn(author, clean)])[-context_turns:]
        sampling = with_values(self.tasks[CHAT].sampling, STYLES[style])
        request = self._request(CHAT, tuple(turns), sampling, progress)
        outcome = await self._generate_clean(request, self._settings.profanity_for(preferences))
        if outcome.timed_out:
            raise ReplyTimeoutError(f"generation for chat {chat_id} ran past {self._timeout} s")
        if not outcome.text:
            return ChatReply("", context=tuple(turns), stopped=outcome.stopped)
        said = (Turn(author, clean), Turn(BOT_AUTHOR, outcome.text))
        return ChatReply(outcome.text, said, tuple(turns), outcome.stopped)

    def remember(self, chat_id: int, reply: ChatReply) -> None:
        """Add a delivered reply and the message it answers to the chat's history."""
        if reply.turns:
            self._store.add_turns(chat_id, list(reply.turns))

    def overhear(self, chat_id: int, text: str, author: str) -> None:
        """Keep a group's message the bot did not answer as a turn of its history, cleaned as a prompt's turn is."""
        clean = self.model.clean_user_text(text)
        if clean:
            self._store.add_turns(chat_id, [Turn(author, clean)])

    async def compose(
        self,
        task: str,
        topic: str,
        *,
        background: bool = False,
        profanity: str | None = None,
        progress: ReplyProgress | None = None,
    ) -> ChatReply:
        """A toast or horoscope about ``topic`` (a holiday, a sign); its text is "" when the model had none.

        Not a turn of any chat's history. ``background`` work (the daily horoscopes) waits for every
        interactive request. ``profanity`` is the mode its reader chose (None: PROFANITY). ``progress`` sees the
        text while it is written and may stop it, as for ``reply``. Raises EmptyMessageError when nothing of the
        topic is left once special tokens are removed, BusyError and ReplyTimeoutError.
        """
        job = self.tasks[task]
        clean = job.backend.clean_user_text(topic)
        if not clean:
            raise EmptyMessageError(topic)
        request = self._request(task, (request_turn(task, clean),), progress=progress)
        outcome = await self._generate_clean(request, profanity or self._settings.profanity, background=background)
        if outcome.timed_out:
            raise ReplyTimeoutError(f"{task} about {clean!r} ran past {self._timeout} s")
        return ChatReply(outcome.text, context=request.turns, stopped=outcome.stopped)

    def forget(self, chat_id: int) -> None:
        """Clear the chat's history."""
        self._store.clear(chat_id)

    def shutdown(self) -> None:
        """Let running generations finish and stop the pool."""
        self._pool.shutdown()

    async def aclose(self) -> None:
        """Close remote backends' connections (local ones hold none)."""
        for backend in self._backends.values():
            if isinstance(backend, RemoteBackend):
                await backend.aclose()
