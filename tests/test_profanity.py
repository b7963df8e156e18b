"""The profanity filter alone: the word lists (recall, false positives), disguises, masking, drafts, BLOCKED_WORDS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inference.profanity import ProfanityFilter, read_word_list

WORD_LISTS = Path(__file__).resolve().parent / "wordlists"
OBSCENE = read_word_list(WORD_LISTS / "profanity_obscene.txt")
ORDINARY = read_word_list(WORD_LISTS / "profanity_ordinary.txt")


@pytest.fixture(scope="module")
def profanity() -> ProfanityFilter:
    return ProfanityFilter()


def masked_whole(profanity: ProfanityFilter, word: str) -> bool:
    """Whether every letter of ``word`` after its first became * (split words keep their separators)."""
    return profanity.mask(word) == word[0] + re.sub(r"[^\W_]|[@$]", "*", word[1:])


def test_the_lists_are_as_large_as_promised() -> None:
    assert len(OBSCENE) >= 60 and len(ORDINARY) >= 150
    assert len(set(OBSCENE)) == len(OBSCENE) and len(set(ORDINARY)) == len(ORDINARY)


def test_recall_on_obscene_forms_is_at_least_95_percent(profanity: ProfanityFilter) -> None:
    missed = [word for word in OBSCENE if not masked_whole(profanity, word)]
    assert len(missed) <= 0.05 * len(OBSCENE), missed


def test_no_ordinary_word_is_touched(profanity: ProfanityFilter) -> None:
    touched = [word for word in ORDINARY if profanity.contains(word) or profanity.mask(word) != word]
    assert touched == []


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("ну ты и сука, бля!", "ну ты и с***, б**!"),
        ("Охуеть можно", "О***** можно"),
        ("хлеб, небо и скипидар", "хлеб, небо и скипидар"),
        ("x.y.й тебе", "x.*.* тебе"),
        ("н а х у й", "н * * * *"),
        ("он в.ъ.е.б.а.л", "он в.*.*.*.*.*"),
        ("бл@ть, 3ae6aл", "б****, 3*****"),
        ("хууууй", "х*****"),
        ("пиздец-то какой", "п*****-то какой"),
        ("ни х у я себе", "ни х * * себе"),
    ],
)
def test_masking_keeps_the_first_letter_and_everything_around(
    profanity: ProfanityFilter, text: str, masked: str
) -> None:
    assert profanity.mask(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "А. С. Пушкин и Е. Б. Иванов",  # initials: two letters are no split word
        "а я у бабушки",
        "в с е   б ы л и",  # split words that are ordinary
        "в с е б ы л и",  # "ебыли" inside must not count
        "у меня 300 рублей и 6 яблок",
        "х у д о й",
    ],
)
def test_single_letters_are_not_glued_into_a_false_match(profanity: ProfanityFilter, text: str) -> None:
    assert profanity.mask(text) == text


def test_split_words_are_told_apart_by_their_separators(profanity: ProfanityFilter) -> None:
    assert profanity.mask("х.у.й п.и.з.д.а и т.д.") == "х.*.* п.*.*.*.* и т.д."
    assert profanity.mask("с у к а   и   к о т") == "с * * *   и   к о т"


@pytest.mark.parametrize(
    ("partial", "shown"),
    [
        ("ну ты су", "ну ты "),  # сука may follow: held back
        ("ну ты сука ", "ну ты с*** "),
        ("ну х у", "ну "),  # a split word may be coming
        ("ну х у й ", "ну "),
        ("ну х у й, ладно", "ну х * *, "),
        ("привет, как дела", "привет, как "),
        ("привет, как дела?", "привет, как дела?"),
        ("", ""),
    ],
)
def test_a_draft_shows_its_finished_words_masked(profanity: ProfanityFilter, partial: str, shown: str) -> None:
    assert profanity.mask_draft(partial) == shown
    assert profanity.mask(partial).startswith(shown), "a draft is a prefix of the masked text"


def test_a_blocked_word_is_found_in_any_case_and_inflection() -> None:
    blocked = ProfanityFilter(["Васька", "пепси кола", "ЧЕБУРАШКА"])
    assert blocked.mask("Отдай Ваське его ВАСЬКИНЫ вещи, васькой звать") == (
        "Отдай В***** его ВАСЬКИНЫ вещи, в****** звать"
    )
    assert blocked.mask("купи Пепси-Колу и чебурашек") == "купи П****-**** и ч********"
    assert blocked.mask("пепси без колы") == "пепси без колы", "a phrase counts whole"
    assert not ProfanityFilter().contains("Ваське"), "the owner's words are theirs alone"


def test_a_blocked_name_does_not_catch_a_verb_that_shares_a_form() -> None:
    # "коля" is the name and also a gerund of колоть: the owner wrote the name, so колет (колоть only) stays.
    assert ProfanityFilter(["Коля"]).mask("Коле скажи, он колет дрова") == "К*** скажи, он колет дрова"


def test_a_word_list_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("\ufeff# мои слова\nВаська\n\n  пепси   кола \n", encoding="utf-8")
    assert read_word_list(path) == ("Васька", "пепси кола")
