"""Robustness: the gate's inputs, perturbed the way real users type, and how much worse the model does on them.

Each perturbation is a pure function of (text, kind, seed): the same inputs always give the same output. English
and Japanese texts get different kinds, because typos and case mean nothing in Japanese and width and kana choice
mean nothing in English:

    English   typo         letters swapped with their neighbour or deleted, at `rate` per letter (at least one)
              case         the whole text lowercased, or uppercased, or word-initial letters flipped
              whitespace   spaces doubled or tripled at random gaps, plus a trailing space
              contraction  "do not" -> "don't", "I am" -> "I'm", ...; a text with none is expanded the other way
    Japanese  width        ASCII letters and digits to full width, katakana to half width (NFKC undoes it)
              kana         runs of hiragana written in katakana (for example ください -> クダサイ)
              punctuation  。、！？「」 swapped for ASCII or full-width-Latin variants
              particles    case particles (は が を に で へ) after a kanji or katakana word dropped, as in chat

A kind that cannot change a text (a contraction-free, expansion-free sentence; Japanese without particles) leaves
it as it is: `perturbations` picks the next kind for such a text. The gate compares answers to clean and perturbed
inputs (PromptBench, Zhu et al. 2023: performance drop rate).
"""

from __future__ import annotations

import random
import re
import unicodedata

ENGLISH_KINDS = ("typo", "case", "whitespace", "contraction")
JAPANESE_KINDS = ("width", "kana", "punctuation", "particles")
JAPANESE_CHARACTER = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff66-\uff9f]")


def is_japanese(text: str) -> bool:
    return JAPANESE_CHARACTER.search(text) is not None


def kinds_for(text: str) -> tuple[str, ...]:
    return JAPANESE_KINDS if is_japanese(text) else ENGLISH_KINDS


def perturb(text: str, kind: str, seed: int = 0, rate: float = 0.05) -> str:
    """`text` with one kind of perturbation; deterministic for (text, kind, seed, rate)."""
    generator = random.Random(f"{seed}|{kind}|{rate}|{text}")
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; known: {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[kind](text, generator, rate)


def perturbations(texts: list[str], seed: int = 0, rate: float = 0.05) -> list[tuple[str, str]]:
    """(kind, perturbed text) for each text, kinds cycling through its language's list so that every kind is used."""
    result = []
    seen = {ENGLISH_KINDS: 0, JAPANESE_KINDS: 0}  # counted per language: sets often alternate EN and JA
    for text in texts:
        kinds = kinds_for(text)
        index, seen[kinds] = seen[kinds], seen[kinds] + 1
        for offset in range(len(kinds)):  # the first kind, in turn, that changes this text
            kind = kinds[(index + offset) % len(kinds)]
            perturbed = perturb(text, kind, seed, rate)
            if perturbed != text:
                break
        result.append((kind, perturbed))
    return result


def _at_least_one(positions: list[int], generator: random.Random, rate: float) -> list[int]:
    chosen = [position for position in positions if generator.random() < rate]
    return chosen or ([generator.choice(positions)] if positions else [])


# English -----------------------------------------------------------------------------------------------------------

def typo(text: str, generator: random.Random, rate: float) -> str:
    letters = [i for i, character in enumerate(text) if character.isalpha()]
    characters = list(text)
    for position in sorted(_at_least_one(letters, generator, rate), reverse=True):  # right to left: indices stay valid
        swappable = position + 1 < len(characters) and characters[position + 1].isalpha()
        if swappable and generator.random() < 0.5 and characters[position] != characters[position + 1]:
            characters[position], characters[position + 1] = characters[position + 1], characters[position]
        else:
            del characters[position]
    return "".join(characters)


def case(text: str, generator: random.Random, rate: float) -> str:
    style = generator.choice(["lower", "upper", "flip"])
    if style == "lower" and text.lower() != text:
        return text.lower()
    if style == "upper" and text.upper() != text:
        return text.upper()
    starts = [match.start() for match in re.finditer(r"\b[^\W\d_]", text)]
    characters = list(text)
    for position in _at_least_one(starts, generator, 0.5):
        characters[position] = characters[position].swapcase()
    return "".join(characters)


def whitespace(text: str, generator: random.Random, rate: float) -> str:
    gaps = [match.start() for match in re.finditer(" ", text)]
    characters = list(text)
    for position in sorted(_at_least_one(gaps, generator, 0.3), reverse=True):
        characters.insert(position, " " * generator.randint(1, 2))
    return "".join(characters) + " "


CONTRACTIONS = [
    ("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"), ("is not", "isn't"), ("are not", "aren't"),
    ("was not", "wasn't"), ("cannot", "can't"), ("can not", "can't"), ("will not", "won't"), ("would not", "wouldn't"),
    ("should not", "shouldn't"), ("could not", "couldn't"), ("have not", "haven't"), ("I am", "I'm"),
    ("you are", "you're"), ("we are", "we're"), ("they are", "they're"), ("it is", "it's"), ("that is", "that's"),
    ("what is", "what's"), ("there is", "there's"), ("I have", "I've"), ("I would", "I'd"), ("I will", "I'll"),
    ("you will", "you'll"), ("let us", "let's"),
]


def contraction(text: str, generator: random.Random, rate: float) -> str:
    def swap(source: str, target: str, value: str) -> str:
        def keep_case(match: re.Match[str]) -> str:
            return target[0].upper() + target[1:] if match.group(0)[0].isupper() else target
        return re.sub(rf"\b{re.escape(source)}\b", keep_case, value, flags=re.IGNORECASE)

    contracted = text
    for long, short in CONTRACTIONS:
        contracted = swap(long, short, contracted)
    if contracted != text:
        return contracted
    expanded = text.replace("’", "'")
    for long, short in CONTRACTIONS:
        expanded = swap(short, long, expanded)
    return expanded if expanded != text.replace("’", "'") else text


# Japanese ----------------------------------------------------------------------------------------------------------

def _half_width_katakana() -> dict[str, str]:
    """Full-width katakana -> half-width (NFKC maps the other way; Python has no inverse)."""
    table = {}
    for code in range(0xFF66, 0xFF9E):
        half = chr(code)
        for mark in ("", "\uff9e", "\uff9f"):  # voiced and semi-voiced marks: ｶﾞ -> ガ, ﾊﾟ -> パ
            full = unicodedata.normalize("NFKC", half + mark)
            if len(full) == 1:
                table.setdefault(full, half + mark)
    return table


HALF_WIDTH_KATAKANA = _half_width_katakana()


def width(text: str, generator: random.Random, rate: float) -> str:
    def narrow_or_widen(character: str) -> str:
        if "!" <= character <= "~" and character.isalnum():
            return chr(ord(character) + 0xFEE0)  # ASCII letter or digit -> its full-width form
        return HALF_WIDTH_KATAKANA.get(character, character)

    return "".join(map(narrow_or_widen, text))


def kana(text: str, generator: random.Random, rate: float) -> str:
    runs = [match.span() for match in re.finditer(r"[\u3041-\u3096]+", text)]
    characters = list(text)
    for index in _at_least_one(list(range(len(runs))), generator, 0.5):
        start, end = runs[index]
        for position in range(start, end):
            characters[position] = chr(ord(characters[position]) + 0x60)  # hiragana -> katakana
    return "".join(characters)


PUNCTUATION_VARIANTS = [
    {"。": ".", "、": ",", "！": "!", "？": "?", "「": '"', "」": '"'},
    {"。": "．", "、": "，", "！": "!", "？": "?", "「": "『", "」": "』"},
    {"。": "", "、": " ", "！": "", "？": "", "「": "", "」": ""},
]


def punctuation(text: str, generator: random.Random, rate: float) -> str:
    variant = generator.choice(PUNCTUATION_VARIANTS)
    return "".join(variant.get(character, character) for character in text)


# A particle directly after a kanji, katakana, digit or Latin word, and before anything but more hiragana.
PARTICLE = re.compile(r"(?<=[\u30a1-\u30fa\u30fc\u3400-\u9fff0-9A-Za-z\uff10-\uff5a])[はがをにでへ](?![\u3041-\u3096])")


def particles(text: str, generator: random.Random, rate: float) -> str:
    found = [match.start() for match in PARTICLE.finditer(text)]
    characters = list(text)
    for position in sorted(_at_least_one(found, generator, 0.5), reverse=True):
        del characters[position]
    return "".join(characters)


PERTURBATIONS = {
    "typo": typo, "case": case, "whitespace": whitespace, "contraction": contraction,
    "width": width, "kana": kana, "punctuation": punctuation, "particles": particles,
}
