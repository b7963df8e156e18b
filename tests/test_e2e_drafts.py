"""End to end: ``python main.py`` shows private replies as drafts over the fake Bot API, and copes with a refusal."""

from __future__ import annotations

import itertools
from pathlib import Path

from botprocess import is_to, start_bot, stop_bot
from fake_telegram import FakeTelegram


def is_reply(params: dict) -> bool:
    return "\n\n" in params["text"]


async def test_drafts_then_one_message_and_a_server_that_refuses_them(
    fake: FakeTelegram, tmp_path: Path, endless_model_dir: Path
) -> None:
    bot = await start_bot(fake, tmp_path, endless_model_dir, draft_interval_ms=0)
    try:
        fake.send_text(5, "/toast День космонавтики")
        toast = (await fake.wait_for("sendMessage", lambda p: is_to(5)(p) and is_reply(p), timeout=60))["text"]
        assert "stopped_message_generation" in (fake.allowed_updates or []), "the stop button's updates are asked for"
        text = toast.split("\n\n")[1]
        drafts = [draft["text"] for draft in fake.drafts(5)]
        assert drafts, "the toast showed as a draft first"
        for shorter, longer in itertools.pairwise(drafts):
            assert longer.startswith(shorter) and len(longer) > len(shorter), drafts
        assert all(text.startswith(draft) and len(draft) < len(text) for draft in drafts), (drafts, text)
        methods = [call.method for call in fake.calls if is_to(5)(call.params) and call.method != "sendChatAction"]
        assert methods[-1] == "sendMessage" and set(methods[:-1]) == {"sendMessageDraft"}, methods
        assert len({draft["draft_id"] for draft in fake.drafts(5)}) == 1

        fake.send_text(-6, "/toast Новый год", chat_type="supergroup")
        await fake.wait_for("sendMessage", lambda p: is_to(-6)(p) and is_reply(p), timeout=60)
        assert fake.drafts(-6) == [], "no drafts in a group"

        # A Bot API server too old for drafts: one refused try, then none, and every reply still comes.
        fake.unknown_methods.add("sendMessageDraft")
        since = len(fake.calls)
        for chat in (7, 8):
            fake.send_text(chat, "/toast Новый год")
            await fake.wait_for("sendMessage", lambda p, chat=chat: is_to(chat)(p) and is_reply(p), timeout=60)
        fake.send_text(7, "привет")
        await fake.wait_for("sendMessage", lambda p: is_to(7)(p) and not is_reply(p), since=since, timeout=60)
        tries = [call for call in fake.calls[since:] if call.method == "sendMessageDraft"]
        assert [(call.status, call.params["chat_id"]) for call in tries] == [(404, 7)]
        await stop_bot(bot)
        assert bot.log.count("refused sendMessageDraft") == 1, bot.log
    finally:
        bot.kill()
