"""Russian obscene words found whole, in any inflection and the usual disguises, and masked.

Pure text code shared by the bot (PROFANITY, BLOCKED_WORDS) and the training side (export_chat.py
--clean); no aiogram, no torch. A word is judged whole, never as a substring of the text: хуй, ебать
and блять count where they begin the word or follow its prefixes (о-хуеть, за-ебал, въ-ебал,
долбо-ёб), so "страхуй", "хлебать", "оскорблять" or "скипидар" stay as they are; roots no ordinary
word holds (пизд, бляд, мудак…) count anywhere in it. Words whose root alone would catch ordinary
ones (сука and сукно, манда and команда, педик and педикюр) are matched in their inflected forms
only, which pymorphy3's dictionary generates, as it does for the owner's own BLOCKED_WORDS.

Before judging, a word is lower-cased, Latin and digit look-alikes become the Cyrillic letters they
imitate (``xyй``, ``3ае6ал``, ``бл@ть``), ё becomes е and repeated letters one ("хуууй"); a run of
single letters split by spaces, dots or dashes ("х у й", "п.и.з.д.а") is read as one word.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymorphy3 import MorphAnalyzer

ALLOW, MASK, AVOID = "allow", "mask", "avoid"
MODES = (ALLOW, MASK, AVOID)

# Characters a word is made of: letters, digits and the symbols that stand for letters (бл@ть, $ука).
_WORD_CHAR = r"[^\W_]|[@$]"
_WORD = re.compile(rf"(?:{_WORD_CHAR})+")
# Three or more single characters split by spaces, dots, dashes, underscores or asterisks: "х у й", "х.у.й".
_SPLIT_RUN = re.compile(rf"(?<![\w@$])(?:{_WORD_CHAR})(?:[ .\-_*·]{{1,3}}(?:{_WORD_CHAR})){{2,}}(?![\w@$])")
# What a draft must hold back: an unfinished word, or single letters that may go on into a split word.
_UNFINISHED = re.compile(
    rf"(?<![\w@$])(?:(?:{_WORD_CHAR})[ .\-_*·]{{1,3}})+(?:{_WORD_CHAR})?$|(?<![\w@$])(?:{_WORD_CHAR})+$"
)
_REPEATS = re.compile(r"(.)\1+")

# Latin letters, digits and symbols that look like Cyrillic letters, and ё, as the letter they imitate.
_LOOK_ALIKES = str.maketrans(
    {
        "a": "а", "b": "в", "c": "с", "e": "е", "h": "н", "i": "и", "k": "к", "m": "м", "n": "п", "o": "о",
        "p": "р", "r": "г", "t": "т", "u": "и", "x": "х", "y": "у", "і": "и", "ё": "е",
        "0": "о", "3": "з", "4": "ч", "6": "б", "9": "я", "@": "а", "$": "с",
    }
)  # fmt: skip

# Prefixes the roots may follow. хуй and пидор take up to two of them (на-хуй, недо-хуя, рас-пидорасить), but
# not у, which would make сухую and безухую "с-у-хую".
_PREFIXES = "а|без|бес|в|вз|вс|вы|до|за|из|ис|на|над|не|недо|ни|о|об|от|пере|по|под|пре|пред|при|про|раз|рас|с"
# ебать takes a prefix ending in a vowel, or in a consonant with ъ or ь ("въебал", "подъебнуть"), so that
# "себе" and "вебинар" are not "с-еб-е" and "в-еб-инар"; or the first half of a compound (долбоёб, злоебучий).
_EB_VOWEL_PREFIXES = "вы|до|за|на|не|недо|ни|пере|по|при|про|у"
_EB_CONSONANT_PREFIXES = "в|вз|из|над|об|от|под|пред|раз|рас|с"
_COMPOUND_HEADS = "долб[оа]|муд[оа]|пизд[оа]|зл[оа]|хитро(?:вы)?"
_ROOTS = re.compile(
    "|".join(
        (
            rf"^(?:{_PREFIXES}){{0,2}}(?:ху[йеяюи]|пид[оа]р|пидр)",
            rf"^(?:(?:{_EB_VOWEL_PREFIXES}){{0,2}}(?:{_EB_VOWEL_PREFIXES}|(?:{_EB_CONSONANT_PREFIXES})[ъь])"
            rf"|{_COMPOUND_HEADS})?еб",
            # блять after one prefix at most: оскорблять, употреблять, пособлять, аблятив are ordinary.
            r"^(?:вы|за|на|по|раз|рас|недо)?блят",
            # Roots no ordinary word contains.
            r"бляд|пизд|пезд|г[ао]ндон|шлюх|шлюш|залуп|ублюд|муда[кч]|мудил|мудозвон|мразот|^сучон|^сученыш",
        )
    )
)
# Words matched whole, in every form pymorphy3 knows for them (сука, суки, суке… but not сук, a bough),
# where their root alone would catch ordinary words (сукно, команда, педикюр).
_WHOLE_WORDS = ("сука", "сучка", "сучара", "сукин", "манда", "мандавошка", "шалава", "мразь", "педик")
# Forms taken as they are: pymorphy3 reads хули as a form of хулить; бл@ть reads as блать.
_WRITTEN_FORMS = frozenset({"бля", "хули", "блать", "бладь"})
# Forms of those words that are an ordinary word in the first place.
_ORDINARY_FORMS = frozenset({"сук"})
_WORD_CACHE = 65536


@cache
def _analyzer() -> MorphAnalyzer:
    """pymorphy3's analyser with its Russian dictionary, loaded once per process (a tenth of a second)."""
    from pymorphy3 import MorphAnalyzer

    return MorphAnalyzer()


def normalize(word: str) -> str:
    """The word as it is judged: lower case, look-alikes as the Cyrillic letters they imitate, ё as е."""
    return word.lower().translate(_LOOK_ALIKES)


def _readings(word: str) -> tuple[str, ...]:
    """The normalised word, and without its repeated letters ("хууй" as "хуй") when it has any."""
    normal = normalize(word)
    single = _REPEATS.sub(r"\1", normal)
    return (normal, single) if single != normal else (normal,)


def inflections(word: str) -> frozenset[str]:
    """Every form of ``word`` that pymorphy3 knows or predicts, normalised (the word itself included).

    A word in its dictionary form keeps only the readings of which it is that form: "коля" is the name
    (Коли, Коле, Колю), not the gerund of колоть (колешь, колет). Any other word stands for the words
    it may be a form of ("ваське": all of васька's forms).
    """
    parses = _analyzer().parse(word.lower())
    own = [parse for parse in parses if normalize(parse.normal_form) == normalize(word)]
    words = {word, *(form.word for parse in own or parses for form in parse.lexeme)}
    return frozenset(reading for form in words for reading in _readings(form))


@dataclass(frozen=True)
class Span:
    """Where an obscene word is in a text: ``text[start:end]`` (a word, or a run of split letters)."""

    start: int
    end: int


def read_word_list(path: str | Path) -> tuple[str, ...]:
    """The words and phrases of a BLOCKED_WORDS file, one a line; blank lines and lines starting with # are skipped.

    Raises OSError when it can't be read and UnicodeDecodeError when it is not UTF-8.
    """
    lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    return tuple(" ".join(line.split()) for line in lines if line.strip() and not line.lstrip().startswith("#"))


class ProfanityFilter:
    """Finds obscene words (and ``blocked`` words and phrases, in any inflection) in a text, and masks them."""

    def __init__(self, blocked: Iterable[str] = ()) -> None:
        forms: set[str] = set(_WRITTEN_FORMS)
        for word in _WHOLE_WORDS:
            forms |= inflections(word)
        phrases: list[tuple[frozenset[str], ...]] = []
        for entry in blocked:
            words = _WORD.findall(entry)
            if len(words) == 1:
                forms |= inflections(words[0])
            elif words:
                phrases.append(tuple(inflections(word) for word in words))
        self._forms = frozenset(forms - _ORDINARY_FORMS)
        self._phrases = tuple(phrases)
        self._obscene_word = lru_cache(maxsize=_WORD_CACHE)(self._judge)

    def _judge(self, word: str) -> bool:
        """Whether one word (as written) is obscene or blocked."""
        return any(reading in self._forms or _ROOTS.search(reading) for reading in _readings(word))

    def spans(self, text: str) -> list[Span]:
        """The obscene words and blocked phrases of ``text``, in order, not overlapping."""
        found: list[Span] = []
        covered = 0
        for run in _SPLIT_RUN.finditer(text):
            found.extend(self._split_words(run))
        words = list(_WORD.finditer(text))
        for index, word in enumerate(words):
            phrase_end = self._phrase_end(words, index) if self._phrases else None
            if phrase_end is not None:
                found.append(Span(word.start(), phrase_end))
            elif len(word[0]) > 1 and self._obscene_word(word[0]):
                found.append(Span(word.start(), word.end()))
        merged: list[Span] = []
        for span in sorted(found, key=lambda s: (s.start, -s.end)):
            if span.start >= covered:
                merged.append(span)
                covered = span.end
        return merged

    def _split_words(self, run: re.Match[str]) -> Iterator[Span]:
        """The obscene words spelt letter by letter in a run of single letters, each judged whole.

        A run splits where its separator changes ("х.у.й п.и.з.д.а", "в с е   б ы л и"); a part is never
        searched for a word inside it, which would glue ordinary neighbours ("в с е б ы л и": "ебыли").
        """
        letters = list(re.finditer(_WORD_CHAR, run[0]))
        gaps = [run[0][before.end() : after.start()] for before, after in itertools.pairwise(letters)]
        usual = max(gaps, key=gaps.count)
        start = 0
        for end in range(1, len(letters) + 1):
            if end < len(letters) and gaps[end - 1] == usual:
                continue
            part = letters[start:end]
            if len(part) >= 3 and self._obscene_word("".join(letter[0] for letter in part)):
                yield Span(run.start() + part[0].start(), run.start() + part[-1].end())
            start = end

    def _phrase_end(self, words: list[re.Match[str]], index: int) -> int | None:
        """Where a blocked phrase that starts at ``words[index]`` ends in the text, if one does."""
        for phrase in self._phrases:
            following = words[index : index + len(phrase)]
            if len(following) == len(phrase) and all(
                not forms.isdisjoint(_readings(word[0])) for word, forms in zip(following, phrase, strict=True)
            ):
                return following[-1].end()
        return None

    def contains(self, text: str) -> bool:
        """Whether ``text`` has an obscene word or a blocked one."""
        return bool(self.spans(text))

    def mask(self, text: str) -> str:
        """``text`` with each obscene or blocked word's letters after the first replaced by ``*``."""
        pieces: list[str] = []
        done = 0
        for span in self.spans(text):
            word = text[span.start : span.end]
            pieces += [text[done : span.start], word[0], re.sub(_WORD_CHAR, "*", word[1:])]
            done = span.end
        return "".join([*pieces, text[done:]])

    def mask_draft(self, text: str) -> str:
        """What a draft of a reply still being written may show: the masked text up to its last finished word.

        An unfinished last word ("пиз…") or trailing single letters ("х у …") are held back, since the
        next piece may make them obscene; the final text goes through ``mask``.
        """
        cut = _UNFINISHED.search(text)
        return self.mask(text[: cut.start()] if cut else text)
