"""Toxicity scores for English and Japanese text, offline: each text -> a number in [0, 1], higher = more toxic.

`LexiconToxicityScorer` needs no model and no network; the gate's default combines it with a learned model
(learned_toxicity.py), and `toxicity_scorers.load_toxicity_scorer` picks a scorer by name. `normalize` undoes the usual disguises: NFKC
(full-width letters, half-width kana), case, accents, invisible characters, Cyrillic look-alikes, leetspeak and masks
(sh1t, @ss, f4ck, c*nt), stretched letters (fuuuuck), spelled-out words (f.u.c.k, f u c k, し ね), and it folds
katakana to hiragana (しね, シネ, ｼﾈ are one word). The weighted lexicons in resources/toxicity/ (slurs, insults,
threats, death wishes, harassment, identity hate, explicit terms) are then matched, and the weights of all hits are
combined as a noisy-OR, 1 - prod(1 - w). An insult near "you" / お前 weighs more: "stupid printer" is not "you're stupid".

Known limits (figures: bench/eval_toxicity.py; sources and licences: resources/toxicity/LICENSES.md):
- a lexicon sees words, not meaning: sarcasm, coded hate and polite contempt score near 0, and a slur that is quoted
  or discussed ("the word X is offensive") scores like one that is used;
- no Japanese word segmentation (no morphological analyser, to keep dependencies at zero): a term with a kana edge is
  refused where that edge is glued to more kana (ばか in ばかり, シネ in シネマ) except next to particles, a change
  between katakana and hiragana counts as a boundary (マジ|キモい), and an allowlist covers known collisions
  (パンくず); collisions nobody listed will still fire;
- the weights are set by hand, not learned: scores rank texts but are not calibrated probabilities (the default
  scorer's combination is fitted and is calibrated; see learned_toxicity.py).

`HFClassifierToxicityScorer` (hf_toxicity.py) scores with any Hugging Face sequence classifier the user names instead.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import unicodedata
from dataclasses import dataclass
from importlib import resources
from typing import Protocol


TARGET_BOOST = 0.25  # added to an insult that has a "you" / お前 within TARGET_WINDOW characters
TARGET_WINDOW = 16  # about three English words: "you are such a stupid" but not "can you debug this stupid regex"
_BREAK = "\u2063"  # marks a katakana/hiragana change while normalising; removed before anything sees the text
_KATAKANA_TO_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_LOOKALIKES = str.maketrans("асеорхуіѕ’‘ʼ`´", "aceopxyis'''''")  # Cyrillic letters that pass for Latin ones
# Leetspeak: each stand-in and the letters it may mean. 1 and ! are i or l ("sh1t", "1oser").
_LEET = {"4": "a", "@": "a", "3": "e", "1": "il", "!": "il", "0": "o", "5": "s", "$": "s", "7": "t", "8": "b", "9": "g"}
_MASKS = "*#"  # f*ck, f##k: any letter
_TOKEN = re.compile(r"[a-z0-9@$!*#]+")
_INTERIOR_LEET = re.compile(r"(?<=[a-z])[4@3!0$1579]+(?=[a-z])")
# A spelled-out word: single characters with separators between them (f.u.c.k, f u c k, s-h-1-t; し ね, ク・ズ).
_LATIN_SPELLED = re.compile(r"(?<![a-z0-9@$])[a-z0-9@$](?:[\s.\-_*,|/~+'\"]{1,3}[a-z0-9@$](?![a-z0-9@$])){2,}")
_CJK = "\u3041-\u3096\u30a1-\u30fa\u30fc\u4e00-\u9fff\u3005"
_CJK_SPELLED = re.compile(rf"(?<![{_CJK}])[{_CJK}](?:[\s.\-_*・·,|/~]{{1,3}}[{_CJK}](?![{_CJK}]))+")
_SEPARATORS = re.compile(r"[\s.\-_*,|/~+'\"・·]+")
_KANA = set(chr(c) for c in range(0x3041, 0x3097)) | {"ー"}
_KANJI = re.compile("[\u4e00-\u9fff\u3005]")
# Kana that may touch a kana-edged Japanese term without making it part of a longer word: particles, and on the
# left the imperative endings that often precede an insult (黙れカス). Nouns also take な/す (バカなの, アホすぎ);
# verbs must not (死ねない is not 死ね).
_LEFT_OK = "はもがをのにとでよねぞなれろえ"
_RIGHT_OK = "だでねよぞがはをにのもめどやーかじとわん"
_NOUN_CATEGORIES = ("insult", "slur", "sexual")


def _fold(text: str, breaks: bool = False) -> str:
    """Character-level normalisation: width, case, accents, invisible characters, look-alikes, kana."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold().translate(_LOOKALIKES)
    # Drop Latin accents only: NFD also splits Japanese dakuten (が -> か + ゛), which NFC then puts back.
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not "\u0300" <= c <= "\u036f")
    text = unicodedata.normalize("NFC", text)
    if breaks:
        text = re.sub("(?<=[\u30a1-\u30fa])(?=[\u3041-\u3096])|(?<=[\u3041-\u3096])(?=[\u30a1-\u30fa])", _BREAK, text)
    return text.translate(_KATAKANA_TO_HIRAGANA)


def normalize(text: str) -> str:
    """Undo common obfuscation so that lexicon lookups see the intended words ("F.U.C.K", "ｼﾈ" -> "fuck", "しね").

    Latin spellings are resolved against the shipped English vocabulary: "f4ck" becomes "fuck" because that is a
    known word, while ordinary tokens keep their characters ("covid19", "too")."""
    return _normalize_with_breaks(text)[0]


@functools.lru_cache(maxsize=1 << 14)  # the default scorer normalises each text twice: for the lexicon and its model
def _normalize_with_breaks(text: str) -> tuple[str, frozenset[int]]:
    """normalize(text), and the positions in it where the script changed between katakana and hiragana."""
    text = _fold(text, breaks=True)
    text = re.sub(r"([ー〜~ぁぃぅぇぉっ])\1+", r"\1", text)  # しねーーー -> しねー
    text = re.sub(r"(.)\1{3,}", r"\1\1\1", text)  # fuuuuck -> fuuuck: _resolve decides on one letter or two
    text = _CJK_SPELLED.sub(lambda m: _SEPARATORS.sub("", m.group()), text)
    text = _LATIN_SPELLED.sub(_join_spelled, text)
    text = _TOKEN.sub(lambda m: _resolve(m.group()), text)
    text = re.sub(r"\s+", " ", re.sub(r"([a-z])\1\1", r"\1\1", text)).strip()  # stretched letters hiding nothing
    pieces = text.split(_BREAK)
    return "".join(pieces), frozenset(itertools.accumulate(len(piece) for piece in pieces[:-1]))


def _join_spelled(match: re.Match[str]) -> str:
    spelled, joined = match.group(), _SEPARATORS.sub("", match.group())
    if not re.search("[a-z]", joined):
        return spelled  # 1.2.3 is a version number
    # Letters between plain spaces are also how people write "u r a ...": join those only into a known word.
    if re.fullmatch(r"\S( \S)+", spelled) and not _vocabulary().known(_resolve(joined)):
        return spelled
    return joined


@dataclass(frozen=True)
class _Vocabulary:
    """The English words of the lexicon, to resolve disguised spellings against."""

    words: dict[str, tuple[int, int]]  # word -> rank: profanity, then slurs, then other terms (what "f***" hides)
    stems: dict[str, tuple[int, int]]  # the stems of "fuck*" entries, ranked the same way
    known_re: re.Pattern[str]

    def known(self, token: str) -> bool:
        return token in self.words or bool(self.known_re.fullmatch(token))

    def toxic(self, token: str) -> bool:
        return self.words.get(token, (0, 0))[0] > 0 or bool(self.known_re.fullmatch(token))

    def best_fit(self, token: str) -> str | None:
        """The likeliest known word behind leetspeak or masks: letters fixed, stand-ins free within their meaning."""
        def fits(part: str, word: str, any_vowel: bool) -> bool:
            return all(have == want or have in _MASKS or have in _LEET and (
                want in _LEET[have] or any_vowel and want in "aeiouy") for have, want in zip(part, word))

        for any_vowel in (False, True):  # f4ck: 4 means a, but no word fits, so let it be any vowel
            found = {w: rank for w, rank in self.words.items() if len(w) == len(token) and fits(token, w, any_vowel)}
            found |= {stem + token[len(stem):]: rank for stem, rank in self.stems.items()
                      if (token[len(stem):].isalpha() or len(token) == len(stem)) and fits(token, stem, any_vowel)}
            if found:
                return max(found, key=found.__getitem__)
        return None


@functools.lru_cache(maxsize=1 << 16)
def _resolve(token: str) -> str:
    """One Latin token with its disguises undone where they hide a known word."""
    vocabulary = _vocabulary()
    if not re.search("[a-z]", token) or vocabulary.known(token):
        return token
    disguised = any(c in _LEET or c in _MASKS for c in token)
    for variant, undoubled in _collapsed_variants(token):
        # A stretched letter (aaa) may hide any word; undoing a plain double only counts for a listed bad word,
        # or "too" would become "to".
        if vocabulary.known(variant) and (not undoubled or vocabulary.toxic(variant)):
            return variant
        if disguised and (guess := vocabulary.best_fit(variant)) and (not undoubled or vocabulary.toxic(guess)):
            return guess
    core = token.strip("@$!*#")
    if core != token and re.search("[a-z]", core):  # "idiot!": the ! is punctuation, not an i
        start = token.index(core)
        return token[:start] + _resolve(core) + token[start + len(core):]
    if _INTERIOR_LEET.search(token):  # h3ll0 -> hello, while covid19 and mp3 keep their digits
        return "".join(_LEET[c][0] if c in _LEET else c for c in token)
    return token


def _collapsed_variants(token: str) -> list[tuple[str, bool]]:
    """The token, then versions with stretched (xxx) or doubled (xx) letters made shorter, at most 64 of them;
    each with whether a plain double was undone."""
    variants = [("", False)]
    for piece, char in re.findall(r"((.)\2{0,2})", token):
        options = [(piece, False)]
        if len(piece) > 1 and char.isalpha() and len(variants) < 64:
            options = [(char * 2, False), (char, False)] if len(piece) == 3 else [(piece, False), (char, True)]
        variants = [(v + option, flag or undone) for v, flag in variants for option, undone in options]
    return sorted(variants, key=lambda variant: (variant[1], -len(variant[0])))


def _read_rows(name: str) -> list[list[str]]:
    text = resources.files("alignpipe").joinpath("resources", "toxicity", name).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.splitlines() if line.strip() and not line.startswith("#")]


@functools.cache
def _vocabulary() -> _Vocabulary:
    words: dict[str, tuple[int, int]] = {}
    stems: dict[str, tuple[int, int]] = {}
    for index, row in enumerate(_read_rows("lexicon_en.tsv")):
        if row[0] == "allow":
            continue
        phrase = row[1] if row[0].startswith("@") else row[2]
        single = None if row[0].startswith("@") else re.fullmatch(r"\*?([a-z']+)(\*?)", phrase)
        rank = (0 if single is None else {"profanity": 3, "slur": 2}.get(row[1], 1), -index)
        if single and single.group(2):
            stems[single.group(1)] = max(rank, stems.get(single.group(1), rank))
        for word in re.findall(r"[a-z']+", phrase.replace("|", " ")):
            words[word] = max(rank, words.get(word, rank))
    known_re = re.compile("|".join(rf"{re.escape(stem)}[a-z]*" for stem in sorted(stems, key=len, reverse=True)))
    return _Vocabulary(words, stems, known_re)


@dataclass(frozen=True)
class _Term:
    text: str  # as written in the lexicon, for explain()
    category: str
    weight: float
    anchor: str  # a literal in every match: a cheap test before the regex
    pattern: re.Pattern[str]
    kana_left: str = ""  # Japanese: which kana may touch the term's left edge ("" = no check)
    kana_right: str = ""  # ... and its right edge
    kanji_left_ok: bool = True  # ^かす: not after a kanji (動かす)


def _term_regex(term: str, slots: dict[str, str], english: bool) -> str:
    """A lexicon term as a regex: {slot} = its alternatives, ~ = a short gap (four English words or 12 characters
    in a sentence); in English words are separated by non-word characters and * at a word's edge = more letters."""
    if not english:
        body = re.sub(r"\\\{(\w+)\\\}", lambda m: slots[m.group(1)], re.escape(term.strip("^*")))
        return body.replace(r"\~", r"[^。！？!?\n]{0,12}?")
    body, separator = "", ""
    for word in term.split():
        if word == "~":
            separator = r"(?:\W+\w+){0,4}?\W+"
            continue
        slot = re.fullmatch(r"\{(\w+)\}", word)
        part = slots[slot.group(1)] if slot else ("[a-z]*" if word[0] == "*" else "") + re.escape(word.strip("*")) + (
            "[a-z]*" if word[-1] == "*" else "")
        body, separator = body + separator + part, r"\W+"
    return rf"(?<![a-z0-9]){body}(?![a-z0-9])"


@dataclass
class _Lexicon:
    terms: list[_Term]
    allow: list[str]
    target: re.Pattern[str]  # a word that addresses someone
    follow: re.Pattern[str]  # what may directly follow a kana-edged Japanese term (死ねカス): the kana-initial nouns

    def candidates(self, text: str) -> list[_Term]:
        """The terms whose anchor may be in `text`, in lexicon order: only those whose anchor starts with one of the
        text's characters or character pairs (testing all ~800 anchors on every text was most of the scorer's time)."""
        keys = set(text) | {text[i:i + 2] for i in range(len(text) - 1)} | {""}
        return [term for _, term in sorted(entry for key in keys for entry in self.by_prefix.get(key, ()))]

    @functools.cached_property
    def by_prefix(self) -> dict[str, list[tuple[int, _Term]]]:
        groups: dict[str, list[tuple[int, _Term]]] = {}
        for position, term in enumerate(self.terms):
            groups.setdefault(term.anchor[:2], []).append((position, term))
        return groups


@functools.cache
def _lexicon() -> _Lexicon:
    terms: list[_Term] = []
    allow: list[str] = []
    targets, follow = [], []
    for language in ("en", "ja"):
        rows = _read_rows(f"lexicon_{language}.tsv")
        fold = str.lower if language == "en" else (lambda text: _fold(text).replace(" ", ""))
        slots = {row[0][1:]: "(?:" + "|".join(r"\W+".join(map(re.escape, fold(alternative).split()))
                                              for alternative in row[1].split("|")) + ")"
                 for row in rows if row[0].startswith("@")}
        allow += [fold(row[1]) for row in rows if row[0] == "allow"]
        for weight, category, term in [(float(r[0]), r[1], fold(r[2])) for r in rows if r[0][0].isdigit()]:
            literals = [w.strip("*^") for w in re.split(r"\s+|~|\{\w+\}", term)]
            regex = re.compile(_term_regex(term, slots, english=language == "en"))
            core = term.strip("^*")
            plain_ja = language == "ja" and "{" not in term
            terms.append(_Term(term, category, weight, max(literals, key=len), regex,
                               kana_left=_LEFT_OK if plain_ja and core[0] in _KANA else "",
                               # a trailing * (ぶっころ*) and an adjective's い end a term on their own
                               kana_right=(_RIGHT_OK + ("なす" if category in _NOUN_CATEGORIES else ""))
                               if plain_ja and core[-1] in _KANA and not term.endswith(("*", "い")) else "",
                               kanji_left_ok=not term.startswith("^")))
            if plain_ja and category in _NOUN_CATEGORIES and core[0] in _KANA:
                follow.append(re.escape(core))
        targets.append(rf"(?<![a-z0-9]){slots['target']}(?![a-z0-9])" if language == "en" else slots["omae"])
    return _Lexicon(terms, sorted(allow, key=len, reverse=True), re.compile("|".join(targets)),
                    re.compile("|".join(follow)))


def _fits_context(term: _Term, text: str, start: int, end: int, breaks: frozenset[int], follow: re.Pattern) -> bool:
    """For Japanese: is this match a word of its own, not the middle of a longer kana word? (English: always.)"""
    left, right = text[start - 1:start], text[end:end + 1]
    if start not in breaks and not term.kanji_left_ok and _KANJI.match(left):
        return False
    if term.kana_left and start not in breaks and left in _KANA and left not in term.kana_left:
        return False
    return not (term.kana_right and end not in breaks and right in _KANA and right not in term.kana_right
                and not follow.match(text, end))


class ToxicityScorer(Protocol):
    def score(self, texts: list[str]) -> list[float]: ...


class LexiconToxicityScorer:
    """The offline default: obfuscation-aware weighted lexicons for English and Japanese (see the module docstring)."""

    def __init__(self, use_allowlist: bool = True) -> None:
        self.lexicon = _lexicon()
        self.allow = self.lexicon.allow if use_allowlist else []  # off only to measure what the allowlist buys

    def explain(self, text: str) -> list[tuple[str, float]]:
        """The lexicon terms found in `text` and the weight each contributed, strongest first."""
        normalized, breaks = _normalize_with_breaks(text)
        for phrase in self.allow:  # same length, so the script-break positions stay valid
            normalized = normalized.replace(phrase, " " * len(phrase))
        targets = [match.span() for match in self.lexicon.target.finditer(normalized)]
        hits = []
        for term in self.lexicon.candidates(normalized):
            if term.anchor not in normalized:
                continue
            spans = [m.span() for m in term.pattern.finditer(normalized)
                     if _fits_context(term, normalized, *m.span(), breaks, self.lexicon.follow)]
            if not spans:
                continue
            aimed = term.category == "insult" and any(
                t_start - end <= TARGET_WINDOW and start - t_end <= TARGET_WINDOW
                for start, end in spans for t_start, t_end in targets)
            hits.append((term.text, min(0.9, term.weight + TARGET_BOOST) if aimed else term.weight))
        return sorted(hits, key=lambda hit: -hit[1])

    def score(self, texts: list[str]) -> list[float]:
        return [1.0 - math.prod(1.0 - weight for _, weight in self.explain(text)) for text in texts]
