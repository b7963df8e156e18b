"""What the profanity guard costs: the filter per reply, and PROFANITY=avoid's retries in the serving path.

    python -m bench.profanity                  # recall and false positives on the tests' word lists, cost per reply
    python -m bench.profanity --dictionary     # also every word form of pymorphy3's dictionary (about 2 minutes)
    python -m bench.serving --profanity avoid  # replies/s at 16 chats with avoid on and off (see avoid_cost)

The serving comparison runs the bot's batched path (ReplyGenerator, BatchingPool, SQLite history, the inbox)
on a model of ruDialoGPT-small's shape whose every reply is one word, obscene or ordinary with equal odds,
so half the first tries swear and avoid asks again (at most AVOID_TRIES tries in all) through the same pool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.serving import BenchReport, batched_settings, cpu_line
from bench.workload import DIALOGUES, BotPath, RunStats, instrument, run_workload
from generator import AVOID_TRIES, ReplyGenerator, load_models
from inference.profanity import ALLOW, AVOID, ProfanityFilter, read_word_list
from settings import Settings
from store import ChatReply, ChatStore
from tests.bigram import blank_bigram_model

ROOT = Path(__file__).resolve().parent.parent
WORD_LISTS = ROOT / "tests" / "wordlists"
# The two words the bench model says, with equal odds.
OBSCENE_WORD, ORDINARY_WORD = "сука", "ладно"


def filter_figures(dictionary: bool) -> None:
    """Print recall and false positives on the tests' lists, and the cost of checking and masking a reply."""
    started = time.perf_counter()
    profanity = ProfanityFilter()
    print(
        f"{cpu_line()}; load average {os.getloadavg()[0]:.2f}\n"
        f"filter built in {(time.perf_counter() - started) * 1000:.0f} ms (pymorphy3 loaded)"
    )
    obscene = read_word_list(WORD_LISTS / "profanity_obscene.txt")
    ordinary = read_word_list(WORD_LISTS / "profanity_ordinary.txt")
    found = sum(profanity.contains(word) for word in obscene)
    touched = [word for word in ordinary if profanity.contains(word)]
    print(f"recall: {found} of {len(obscene)} obscene forms ({100 * found / len(obscene):.1f}%)")
    print(f"false positives: {len(touched)} of {len(ordinary)} ordinary words {touched or ''}")
    replies = [line for dialogue in DIALOGUES for line in dialogue]
    # Chat replies run to 40 tokens: about two of these lines each.
    replies = [f"{first} {second}" for first, second in zip(replies, replies[1:] + replies[:1], strict=True)]
    words = sum(len(reply.split()) for reply in replies) / len(replies)
    fresh = []
    for reply in replies:
        profanity._obscene_word.cache_clear()  # every word judged afresh, as for a reply of words never seen
        started = time.perf_counter()
        profanity.mask(reply)
        fresh.append(time.perf_counter() - started)
    repeats = 50
    started = time.perf_counter()
    for _ in range(repeats):
        for reply in replies:
            profanity.mask(reply)
    cached = (time.perf_counter() - started) / len(replies) / repeats
    print(
        f"mask() per reply ({len(replies)} replies of {words:.1f} words on average): "
        f"{sum(fresh) / len(fresh) * 1e6:.0f} µs with no word cached, {cached * 1e6:.0f} µs with every word cached"
    )
    if dictionary:
        dictionary_figures(profanity)


def dictionary_figures(profanity: ProfanityFilter) -> None:
    """Print how many of pymorphy3's dictionary word forms the filter takes for obscene, and which lemmas they have."""
    from pymorphy3 import MorphAnalyzer

    analyzer = MorphAnalyzer()
    started = time.perf_counter()
    forms = {word for word, *_ in analyzer.iter_known_word_parses("")}
    matched = sorted(word for word in forms if profanity.contains(word))
    lemmas = sorted({analyzer.parse(word)[0].normal_form for word in matched})
    print(
        f"dictionary: {len(matched)} of {len(forms)} word forms matched ({time.perf_counter() - started:.0f} s); "
        f"their likeliest lemmas: {', '.join(lemmas)}"
    )


def build_swearing_model(directory: Path, n_layer: int = 12, n_embd: int = 768) -> Path:
    """A model of ruDialoGPT-small's shape whose every reply is one word: obscene or ordinary, with equal odds.

    As tests/conftest.py's answering model: the blocks add nothing, so each next token depends on the last one
    only; after the bot's speaker token both words are equally likely, after either comes a speaker token.
    """
    import torch

    from inference.dialogue import FIRST_SPEAKER, SECOND_SPEAKER
    from training.modeling import new_model, new_tokenizer

    lines = [line for dialogue in DIALOGUES for line in dialogue]
    tokenizer = new_tokenizer([*lines, *[OBSCENE_WORD, ORDINARY_WORD] * 20], vocab_size=2000, min_frequency=1)
    answers = [tokenizer.encode(f" {word}") for word in (OBSCENE_WORD, ORDINARY_WORD)]
    assert all(len(ids) == 1 for ids in answers), answers
    model = new_model(
        tokenizer, n_embd=n_embd, n_layer=n_layer, n_head=n_embd // 64, n_positions=1024, tie_word_embeddings=False
    )
    bot_turn, *speakers = tokenizer.convert_tokens_to_ids([SECOND_SPEAKER, FIRST_SPEAKER, SECOND_SPEAKER])
    with torch.no_grad():
        blank_bigram_model(model)
        model.transformer.wte.weight[bot_turn, 0] = 1.0
        model.transformer.wte.weight[[ids[0] for ids in answers], 1] = 1.0
        model.lm_head.weight[[ids[0] for ids in answers], 0] = 12.0
        model.lm_head.weight[speakers, 1] = torch.tensor([12.0, 10.0])
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


class Said:
    """The bot's path for a chat message, keeping every reply text the chats received."""

    def __init__(self, path: BotPath) -> None:
        self._path = path
        self.texts: list[str] = []

    async def reply(self, chat_id: int, text: str, author: str) -> ChatReply:
        """Answer as the bot does, and keep the text."""
        reply = await self._path.reply(chat_id, text, author)
        self.texts.append(reply.text)
        return reply

    def remember(self, chat_id: int, reply: ChatReply) -> None:
        """Remember as the bot does."""
        self._path.remember(chat_id, reply)


async def avoid_cost(base: Settings, *, chats: int, rounds: int, lag_tick: float) -> dict[str, RunStats]:
    """The batched path at ``chats`` chats with PROFANITY=allow and =avoid on the swearing model (``base`` names it).

    Prints, for each, replies/s, p50/p95, generations per reply and what share of the replies swore or was
    masked; returns the runs by mode.
    """
    from bot.inbox import Inbox

    # No repetition penalty: it would count the words of earlier replies in the prompt and tilt the odds.
    base = replace(base, repetition_penalty=1.0, no_repeat_ngram_size=0, max_new_tokens=4)
    model, _ = load_models(base)
    log = instrument(model)
    profanity = ProfanityFilter()
    shape = json.loads((Path(base.model_path) / "config.json").read_text(encoding="utf-8"))
    print(
        f"{cpu_line()}; load average {os.getloadavg()[0]:.2f}\n"
        f"model: {model.summary}, {shape['n_layer']} layers x {shape['n_embd']}, "
        f"every reply '{OBSCENE_WORD}' or '{ORDINARY_WORD}' with equal odds; "
        f"{chats} chats, {rounds} measured messages each (and a warm-up one); avoid: at most {AVOID_TRIES} tries"
    )
    runs: dict[str, RunStats] = {}
    for mode in (ALLOW, AVOID):
        settings = replace(base, profanity=mode, db_path=str(Path(base.db_path).with_name(f"{mode}.sqlite3")))
        store = ChatStore(settings.db_path)
        generator = ReplyGenerator(model, store, settings)
        said = Said(BotPath(generator, Inbox(store.connection)))
        try:
            run = await run_workload(
                path=mode,
                server=said,
                store=store,
                log=log,
                chats=chats,
                rounds=rounds,
                first_chat_id=1000,
                lag_tick=lag_tick,
            )
        finally:
            generator.shutdown()
            store.close()
        rows = sum(len(call.new_tokens) for call in log.calls)
        swore = sum(profanity.contains(text) for text in said.texts) / len(said.texts)
        masked = sum("*" in text for text in said.texts) / len(said.texts)
        print(
            f"{mode:<6} replies/s {run.replies_per_second:6.2f}  p50 {run.p50:5.2f} s  p95 {run.p95:5.2f} s  "
            f"generations per reply {rows / run.replies:4.2f}  rows per call {run.mean_batch:4.1f}  "
            f"replies that swore {100 * swore:4.1f}%  masked {100 * masked:4.1f}%  errors {run.errors}"
        )
        runs[mode] = run
    ratio = runs[AVOID].replies_per_second / runs[ALLOW].replies_per_second
    print(f"avoid/allow: throughput {ratio:.2f}x, p95 latency {runs[AVOID].p95 / runs[ALLOW].p95:.2f}x")
    return runs


def avoid_report(args: argparse.Namespace) -> BenchReport:
    """``python -m bench.serving --profanity avoid``: avoid against allow at 16 chats (or the most --chats says)."""
    chats = max(args.chats) if args.chats else 16
    with tempfile.TemporaryDirectory(prefix="bench_swearing_") as folder:
        started = time.perf_counter()
        model_dir = build_swearing_model(Path(folder) / "model")
        print(f"built the swearing model in {time.perf_counter() - started:.1f} s")
        base = batched_settings(args, model_dir, Path(folder))
        runs = asyncio.run(avoid_cost(base, chats=chats, rounds=args.rounds or 3, lag_tick=args.lag_tick_ms / 1000))
    speed = runs[AVOID].replies_per_second / runs[ALLOW].replies_per_second
    line = f"avoid_throughput_{chats}={speed:.2f} avoid_p95_{chats}={runs[AVOID].p95 / runs[ALLOW].p95:.2f}"
    print(line)
    return BenchReport(list(runs.values()), line)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the filter's figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.profanity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dictionary", action="store_true", help="also run over pymorphy3's whole dictionary")
    filter_figures(parser.parse_args(argv).dictionary)


if __name__ == "__main__":
    main()
