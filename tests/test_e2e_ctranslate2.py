"""End to end with BACKEND=ctranslate2: the real ``python main.py`` converts the model once and replies with it."""

from __future__ import annotations

import time
from pathlib import Path

from botprocess import ADMIN, is_to, start_bot, stop_bot
from fake_telegram import FakeTelegram

import texts
from inference.backend import Request
from inference.ctranslate2_backend import CTranslate2Backend
from inference.sampling import MODEL_CARD, Sampling

# Greedy decoding, so that the bot's reply can be worked out here as well.
GREEDY = {"top_k": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}


def expected_reply(model_dir: Path, cache_dir: Path, text: str) -> str:
    """The reply the bot must give to ``text`` as a chat's first message (int8, greedy, as the bot runs)."""
    backend = CTranslate2Backend(str(model_dir), cache_dir=cache_dir, device="cpu")
    sampling = Sampling(**{**MODEL_CARD.__dict__, **GREEDY})
    return backend.generate([Request((text,), time.monotonic() + 60, sampling)])[0].text


async def test_the_bot_replies_through_ctranslate2_and_reuses_the_conversion(
    fake: FakeTelegram, tmp_path: Path, tiny_model_dir: Path
) -> None:
    text, reply = next(
        (text, reply)
        for text in ("привет", "как дела?", "что делаешь?", "пойдём гулять")
        if (reply := expected_reply(tiny_model_dir, tmp_path / "here", text))
    )
    bot = await start_bot(fake, tmp_path, tiny_model_dir, backend="ctranslate2", **GREEDY)
    try:
        assert "ctranslate2, cpu, int8_float32" in fake.sent_messages(ADMIN)[0]["text"]
        since = len(fake.calls)
        fake.send_text(5, text)
        assert (await fake.wait_for("sendMessage", is_to(5), since=since, timeout=30))["text"] == reply
        await stop_bot(bot)
    finally:
        bot.kill()
    assert bot.log.count("converting") == 1 and "converted" in bot.log
    assert len(list((tmp_path / "ct2").iterdir())) == 1, "the conversion lives next to the database"

    # Restarted with a deadline no generation can meet: the same conversion, and the user hears it took too long.
    since = len(fake.calls)
    bot = await start_bot(fake, tmp_path, tiny_model_dir, backend="ctranslate2", generation_timeout=0.001)
    try:
        fake.send_text(6, "привет")
        assert (await fake.wait_for("sendMessage", is_to(6), since=since, timeout=30))["text"] == texts.TIMEOUT
        await stop_bot(bot)
    finally:
        bot.kill()
    assert "converting" not in bot.log and "made earlier" in bot.log
    assert "ran past 0.001 s" in bot.log
