"""Text helpers shared by the commands: normalisation, units (English words, Japanese characters), language id.

English is split into words; Japanese has no spaces, so each kana/kanji character is a unit of its own. Language
identification is by script and needs no model download: kana means Japanese (Chinese has none), kanji without
kana is Chinese, and Latin text is English when enough of its words are common English function words. It tells
English from Japanese reliably; it does not tell English from other languages in short texts, or Chinese from
Japanese written in kanji only.
"""

from __future__ import annotations

import re
import unicodedata

_KANA = re.compile("[\u3041-\u309f\u30a0-\u30ff\uff66-\uff9f]")
_CJK = "\u3041-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3005"
_CJK_CHAR = re.compile(f"[{_CJK}]")
# A unit: a CJK character on its own, or a run of other letters and digits (an English word).
_UNIT = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
_LATIN_WORD = re.compile(r"[a-z]+")
# The commonest English function words: their share tells English prose from other Latin-script languages.
ENGLISH_WORDS = frozenset(
    "the of and to a in is it you that he was for on are with as i his they be at one have this from or had by "
    "not but what some we can out other were all there when up use your how said an each she which do their if "
    "will way about many then them would so these her see him has more could go come did my no get me our "
    "than been who its now may only into over just any also should here why where please thank yes".split()
)


def normalize(text: str) -> str:
    """NFKC (full-width letters, half-width kana), case folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def units(text: str) -> list[str]:
    """Words of Latin-script text and single characters of Japanese/Chinese text, normalised, punctuation dropped."""
    return _UNIT.findall(normalize(text))


def is_cjk(unit: str) -> bool:
    return bool(_CJK_CHAR.match(unit))


def language(text: str) -> str:
    """'ja', 'zh', 'en' or 'other' (see the module docstring for how and its limits)."""
    normalized = unicodedata.normalize("NFKC", text)
    cjk = len(_CJK_CHAR.findall(normalized))
    words = _LATIN_WORD.findall(normalized.casefold())
    latin = sum(len(word) for word in words)
    if cjk and cjk * 3 >= latin:  # a CJK character carries about as much as a three-letter stretch of English
        return "ja" if _KANA.search(normalized) else "zh"
    if not words:
        return "other"
    english = sum(word in ENGLISH_WORDS for word in words)
    # Short answers ("Yes.", "Two years") carry no function words; all-ASCII short text is taken as English.
    if english / len(words) >= 0.1 or (len(words) <= 4 and normalized.isascii()):
        return "en"
    return "other"
