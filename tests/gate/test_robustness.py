"""Robustness perturbations: each changes text the documented way, the same way for the same seed, per language."""

from __future__ import annotations

import difflib
import unicodedata

import pytest

from alignpipe.gate.robustness import ENGLISH_KINDS, JAPANESE_KINDS, kinds_for, perturb, perturbations

ENGLISH = "How do I reset the kettle? I am not sure it is working after the update."
JAPANESE = "ケトルの電源ボタンを押しても動きません。説明書はどこにありますか？"


def to_hiragana(text: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "\u30a1" <= c <= "\u30f6" else c for c in text)


def without(text: str, characters: str) -> str:
    return "".join(c for c in text if c not in characters)


def test_language_picks_the_kinds():
    assert kinds_for(ENGLISH) == ENGLISH_KINDS
    assert kinds_for(JAPANESE) == JAPANESE_KINDS
    assert kinds_for("K2ケトル") == JAPANESE_KINDS  # any kana or kanji makes a text Japanese


@pytest.mark.parametrize("kind", ENGLISH_KINDS + JAPANESE_KINDS)
def test_same_seed_same_text_and_every_kind_changes_its_language(kind):
    text = ENGLISH if kind in ENGLISH_KINDS else JAPANESE
    assert perturb(text, kind, seed=7) == perturb(text, kind, seed=7)
    assert perturb(text, kind, seed=7) != text


def test_seeds_vary_the_random_kinds():
    assert len({perturb(ENGLISH, "typo", seed=seed) for seed in range(8)}) > 4
    assert len({perturb(ENGLISH, "whitespace", seed=seed) for seed in range(8)}) > 4


def test_typo_edits_only_letters_at_about_the_rate():
    letters = sum(c.isalpha() for c in ENGLISH)
    for seed in range(5):
        typed = perturb(ENGLISH, "typo", seed=seed, rate=0.05)
        assert [c for c in typed if not c.isalpha()] == [c for c in ENGLISH if not c.isalpha()]
        assert 0 <= len(ENGLISH) - len(typed) <= letters * 0.2
    heavy = perturb(ENGLISH, "typo", seed=0, rate=0.4)
    light = perturb(ENGLISH, "typo", seed=0, rate=0.02)
    similarity = lambda text: difflib.SequenceMatcher(None, text, ENGLISH).ratio()  # noqa: E731
    assert similarity(heavy) < similarity(light) < 1


def test_case_and_whitespace_keep_the_words():
    for seed in range(5):
        assert perturb(ENGLISH, "case", seed=seed).lower() == ENGLISH.lower()
        assert perturb(ENGLISH, "whitespace", seed=seed).split() == ENGLISH.split()


def test_contractions_both_ways_keeping_capitals():
    assert perturb("I am sure it is fine, do not worry.", "contraction") == "I'm sure it's fine, don't worry."
    assert perturb("Don't worry, it's fine.", "contraction") == "Do not worry, it is fine."
    assert perturb("Hello there.", "contraction") == "Hello there."  # nothing to contract or expand


def test_width_is_undone_by_nfkc():
    wide = perturb("K2ケトルの温度は80度です。", "width")
    assert "ｹﾄﾙ" in wide and "Ｋ２" in wide and "８０" in wide
    assert unicodedata.normalize("NFKC", wide) == "K2ケトルの温度は80度です。"
    assert unicodedata.normalize("NFKC", perturb("ガイドをパスしてください", "width")) == "ガイドをパスしてください"


def test_kana_swaps_hiragana_runs_to_katakana_only():
    for seed in range(5):
        swapped = perturb(JAPANESE, "kana", seed=seed)
        assert to_hiragana(swapped) == to_hiragana(JAPANESE) and swapped != JAPANESE


def test_punctuation_variants_keep_the_rest():
    for seed in range(5):
        varied = perturb(JAPANESE, "punctuation", seed=seed)
        assert "。" not in varied and "？" not in varied
        assert without(varied, '.,!? ．，"『』') == without(JAPANESE, "。、！？「」")


def test_particles_are_dropped_after_words_not_inside_them():
    assert perturb("私は学生です。", "particles") == "私学生です。"
    dropped = perturb("電源ボタンを押して、説明書を読みます。", "particles", seed=1)
    assert len(dropped) < len("電源ボタンを押して、説明書を読みます。") and set(dropped) <= set("電源ボタンを押して、説明書を読みます。")
    assert perturb("はい、ありがとうございます。", "particles") == "はい、ありがとうございます。"  # no word before は


def test_perturbations_cycle_kinds_and_skip_kinds_that_change_nothing():
    texts = [ENGLISH, "Hello there.", ENGLISH.upper(), ENGLISH, JAPANESE, "はい、ありがとうございます。"]
    result = perturbations(texts, seed=3)
    assert [kind for kind, _ in result][:2] == ["typo", "case"]
    assert all(perturbed != text for (_, perturbed), text in zip(result, texts))
    assert result[4][0] in JAPANESE_KINDS and result[5][0] in JAPANESE_KINDS
    assert perturbations(texts, seed=3) == result


def test_interleaved_languages_still_use_every_kind():
    kinds = [kind for kind, _ in perturbations([ENGLISH, JAPANESE] * 4, seed=0)]
    assert set(kinds[0::2]) == set(ENGLISH_KINDS) and set(kinds[1::2]) == set(JAPANESE_KINDS)
