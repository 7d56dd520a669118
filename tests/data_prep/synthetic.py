"""Seeded synthetic corpora for the data_prep tests and benchmark: distinct originals and lightly edited copies."""

from __future__ import annotations

import random

ENGLISH_WORDS = """
time person year way day thing man world life hand part child eye woman place work week case point government
company number group problem fact kettle water power button light tea coffee morning evening garden window door
table chair river mountain city village market price money friend family school teacher student book letter
story picture music song game team player road car train station ticket holiday weather summer winter spring
autumn doctor hospital medicine question answer reason idea plan result system program computer phone screen
message email account password network server file folder report meeting office manager customer service order
delivery package address street north south east west small large quick slow bright dark warm cold happy quiet
simple strong early late new old young green blue red yellow white black open close carry bring build break
choose clean cook drink drive eat fall feel fight find fly forget give grow hold keep learn leave listen live
lose make meet move pay play pull push read remember ride run say see sell send show sing sit sleep speak
stand start stay swim take talk teach tell think throw travel turn understand wait walk want wash watch wear win
write always never often sometimes usually quickly slowly carefully together almost already again really
""".split()

JAPANESE_WORDS = """
時間 人 年 日 世界 生活 手 子供 目 女性 場所 仕事 週 会社 問題 ケトル 水 電源 ボタン 光 お茶 コーヒー 朝 夕方 庭 窓
ドア 机 椅子 川 山 町 村 市場 値段 お金 友達 家族 学校 先生 学生 本 手紙 物語 写真 音楽 歌 試合 チーム 道 車 電車
駅 切符 休み 天気 夏 冬 春 秋 医者 病院 薬 質問 答え 理由 計画 結果 仕組み 電話 画面 連絡 住所 会議 事務所 お客様
注文 配達 荷物 小さい 大きい 速い 遅い 明るい 暗い 暖かい 寒い 静かな 新しい 古い 若い 青い 赤い 白い 黒い
""".split()
PARTICLES = ["は", "が", "を", "に", "で", "と", "の", "も", "から", "まで"]
JAPANESE_ENDINGS = ["です。", "ます。", "でした。", "ました。", "ですね。", "でしょう。"]


def english_document(rng: random.Random, words: int) -> str:
    sentences, left = [], words
    while left > 0:
        length = min(left, rng.randint(6, 12))
        sentence = " ".join(rng.choice(ENGLISH_WORDS) for _ in range(length))
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        left -= length
    return " ".join(sentences)


def japanese_document(rng: random.Random, words: int) -> str:
    text, left = "", words
    while left > 0:
        length = min(left, rng.randint(3, 6))
        text += "".join(rng.choice(JAPANESE_WORDS) + rng.choice(PARTICLES) for _ in range(length - 1))
        text += rng.choice(JAPANESE_WORDS) + rng.choice(JAPANESE_ENDINGS)
        left -= length
    return text


def lightly_edit(text: str, rng: random.Random, japanese: bool) -> str:
    """Two typos, a spacing change, and one or two words changed: how copies drift across scraped pages."""
    vocabulary = JAPANESE_WORDS if japanese else ENGLISH_WORDS
    for _ in range(rng.randint(1, 2)):  # change a word
        word = rng.choice([w for w in vocabulary if w in text])
        text = text.replace(word, rng.choice(vocabulary), 1)
    for _ in range(2):  # a typo: a character dropped, doubled or swapped with its neighbour
        position = rng.randrange(1, len(text) - 2)
        kind = rng.choice(["drop", "double", "swap"])
        if kind == "drop":
            text = text[:position] + text[position + 1:]
        elif kind == "double":
            text = text[:position] + text[position] + text[position:]
        else:
            text = text[:position] + text[position + 1] + text[position] + text[position + 2:]
    if japanese:  # spacing: Japanese copies pick up spaces and full-width punctuation variants
        position = rng.randrange(1, len(text) - 1)
        return (text[:position] + " " + text[position:]).replace("。", "． ", 1)
    return text.replace(" ", "  ", 2).replace(". ", ".", 1)


def near_duplicate_corpus(n_originals: int, copies: int, japanese: bool, seed: int = 0,
                          words: tuple[int, int] = (25, 45)) -> tuple[list[str], list[tuple[str, int]]]:
    """(originals, edited copies as (text, index of its original)); originals come first in any file built."""
    rng = random.Random(seed)
    make = japanese_document if japanese else english_document
    originals = [make(rng, rng.randint(*words)) for _ in range(n_originals)]
    edited = [(lightly_edit(originals[i], rng, japanese), i) for i in range(n_originals) for _ in range(copies)]
    rng.shuffle(edited)
    return originals, edited
