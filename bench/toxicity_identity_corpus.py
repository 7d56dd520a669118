"""Write the identity training lines, corpus/en_identity_train.jsonl and corpus/ja_identity_train.jsonl (CC0,
written for alignpipe; `split: train`). Run once; the output is committed and bench/train_toxicity.py reads it.

    python bench/toxicity_identity_corpus.py

Why: HateCheck's hateful cases name a group far more often than its benign ones, so the learned scorer learned
identity words as toxic ("I love Muslims" 0.8, "I don't hate X" toxic). These lines name many groups, in English
and Japanese, about as often in benign lines (praise, neutral mentions, negated hate, counter-speech that quotes or
reports hate) as in toxic ones (hate, negated praise, dehumanisation, threats), so that a group's name alone says
nothing and what is said about it decides. Templates (written by hand, in the author's own words, not copied from
HateCheck) are filled with groups; each group gets a seeded subset of the templates, so that no template and no
group is seen with every other one. `template` names the template a line was made from (bench/train_toxicity.py
keeps those lines in one cross-validation fold). The hand-written free lines after them add everyday phrasing. The held-out
identity sets (corpus/*_identity_heldout.jsonl) were written, and committed, before these lines.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "alignpipe" / "resources" / "toxicity" / "corpus"
SHARE = 0.45  # of the templates each group is used with

EN_GROUPS = ["women", "trans people", "gay people", "Black people", "disabled people", "Muslims", "immigrants",
             "Jews", "refugees", "Asians", "Mexicans", "lesbians", "bisexual people", "old people", "Hindus",
             "Christians", "Latinos", "Arabs", "deaf people", "autistic people", "Chinese people",
             "Native Americans", "foreigners", "migrants", "gay men", "trans women", "Black women", "Jewish people",
             "Muslim women", "people in wheelchairs", "Africans", "Indians", "Sikhs", "Roma", "atheists",
             "queer people", "single mothers", "Koreans", "Pakistanis", "people with mental illness"]

EN_BENIGN = {
    "praise": ["I love {g}.", "{G} are wonderful.", "I really admire {g}.", "{G} make this city a better place.",
               "So many {g} have been kind to me over the years.", "{G} deserve respect like everyone else.",
               "Honestly, {g} are some of the funniest people I know.", "We should celebrate {g} more.",
               "I'm grateful for the {g} in my neighbourhood.", "{G} are brilliant at what they do.",
               "Huge respect to all the {g} out there.", "I adore {g}, no apologies.",
               "{G} have every right to be here.", "Having {g} as friends has made my life richer.",
               "{G} are just people, and great ones at that.", "Proud to stand with {g}."],
    "neutral": ["{G} live in every part of the country.", "The study looked at {g} in the workforce.",
                "How many {g} voted in the last election?", "The documentary follows three {g} for a year.",
                "A group of {g} met at the library on Sunday.", "Most {g} I know work in healthcare.",
                "The census counts {g} separately.", "My colleague wrote a thesis on {g} in the 1950s.",
                "Are there support groups for {g} near here?", "The article interviews {g} about rent."],
    "negated_hate": ["I don't hate {g}.", "I have nothing against {g}.", "{G} are not a threat to anyone.",
                     "I would never say {g} are worthless.", "{G} aren't inferior to anyone.",
                     "I don't think {g} are dangerous at all.", "Nobody should hate {g}.",
                     "I've never had a problem with {g}.", "{G} are not disgusting, that's just prejudice.",
                     "No, {g} are not ruining anything.", "I don't dislike {g}, why would I?",
                     "{G} are no less human than anyone else."],
    "counter_quote": ['"{G} are disgusting" is a hateful thing to say.',
                      'If you write "I hate {g}", expect to be reported.',
                      'He posted "{g} are vermin" and got banned, good.',
                      'Saying "{g} should die" is never acceptable.',
                      'My uncle said "{g} are all criminals" and I told him how wrong that is.',
                      'Someone shouted "get out, {g}" at the bus stop and people stepped in.',
                      'Comments like "{g} are animals" are exactly the hate we need to fight.',
                      '"Never trust {g}" is a stereotype, not a fact.'],
    "counter_ref": ["Stop spreading lies about {g}.", "Hate against {g} has no place here.",
                    "Jokes that mock {g} are not funny.", "The abuse {g} get online is shameful.",
                    "Reported every post attacking {g} in that thread.",
                    "People who insult {g} should be ashamed of themselves.",
                    "Blaming {g} for everything is bigotry.", "We have to call out hatred of {g} when we see it."],
}
EN_TOXIC = {
    "hate": ["I hate {g}.", "{G} are disgusting.", "{G} make me sick.", "I can't stand {g}.",
             "{G} are a plague on this country.", "{G} are all criminals.", "Never trust {g}.",
             "{G} are stupid, every single one of them.", "{G} ruin everything they touch.",
             "Get out of here, {g}, nobody wants you.", "{G} are worthless.", "{G} are filthy."],
    "negated_praise": ["I don't respect {g} at all.", "{G} are not real people to me.",
                       "{G} will never be equal to us.", "{G} don't deserve any rights.",
                       "I will never accept {g} in my street.", "{G} are not welcome here."],
    "dehumanise_threat": ["{G} are vermin.", "{G} are animals.", "{G} should all be deported.",
                          "{G} should all die.", "Someone needs to get rid of {g} for good.",
                          "{G} should be locked away.", "We should drive {g} out of town."],
}

JA_GROUPS = ["女性", "外国人", "在日韓国人", "在日コリアン", "中国人", "韓国人", "ゲイ", "同性愛者", "レズビアン",
             "トランスジェンダー", "障害者", "高齢者", "移民", "難民", "ムスリム", "黒人", "ブラジル人", "ベトナム人",
             "フィリピン人", "技能実習生", "生活保護受給者", "アイヌ", "沖縄の人", "発達障害の人", "LGBTの人",
             "女の人", "男性", "シングルマザー", "ハーフの人", "留学生", "クルド人", "精神障害のある人",
             "車椅子の人", "インド人", "外国籍の子ども", "キリスト教徒", "ろう者", "バイセクシュアルの人"]

JA_BENIGN = {
    "praise": ["{g}が大好きです", "{g}の友達がいて本当によかった", "{g}を尊敬している",
               "{g}の人たちにはいつも助けられてる", "{g}も同じ社会の仲間です", "{g}って素敵だと思う",
               "{g}の同僚、仕事が丁寧でほんと助かる", "{g}のみなさん、いつもありがとう",
               "{g}がいる職場のほうが楽しい", "{g}の活躍をもっと応援したい", "{g}と話すといつも元気をもらえる",
               "{g}のことが好きだよ", "{g}にもっと優しい社会になってほしい", "{g}の先輩に憧れてる"],
    "neutral": ["{g}についてのニュースを見た", "{g}の数は年々増えている", "{g}向けの相談窓口があります",
                "{g}の暮らしについて調べている", "{g}を対象にしたアンケートが行われた",
                "近所に{g}が何人か住んでいる", "{g}の就職率についての統計", "{g}に関する本を図書館で借りた",
                "{g}の人口はどれくらい?", "授業で{g}の歴史を習った"],
    "negated_hate": ["{g}を嫌ってなんかいない", "{g}が嫌いなわけじゃない", "{g}に偏見は持っていない",
                     "{g}を差別するつもりはまったくない", "{g}が危険だなんて思わない", "{g}は気持ち悪くなんかない",
                     "{g}を見下したことは一度もない", "{g}が劣ってるなんてありえない",
                     "{g}を嫌う理由なんてないよ", "{g}がいなくなればいいなんて思わない",
                     "{g}だから信用できない、なんてことはない", "{g}を怖いと思ったことはない"],
    "counter_quote": ["「{g}は出ていけ」なんて言葉、本当にひどい", "「{g}は気持ち悪い」という書き込みを通報した",
                      "「{g}なんか死ね」と言われたという相談が増えている",
                      "「{g}はゴミ」って書いた人のアカウントが凍結された", "「{g}はバカ」なんて偏見でしかない",
                      "上司が「{g}は使えない」と言ったので抗議した", "「{g}は犯罪者」というデマに注意してください",
                      "ネットで「{g}は消えろ」と叩かれていて胸が痛い"],
    "counter_ref": ["{g}への差別はやめよう", "{g}へのヘイトスピーチは許されない", "{g}を笑いものにするのはよくない",
                    "{g}を叩く投稿は全部通報した", "{g}へのいじめを見て見ぬふりしないで",
                    "{g}をバカにする人の気がしれない", "{g}への偏見をなくしたい", "{g}を攻撃するデマが多すぎる"],
}
JA_TOXIC = {
    "hate": ["{g}が大嫌い", "{g}は気持ち悪い", "{g}は出ていけ", "{g}は社会のゴミ", "{g}は信用できない",
             "{g}ってほんと迷惑", "{g}はバカばっかり", "{g}はみんな犯罪者", "{g}は消えろ", "{g}は汚い",
             "{g}とか見るだけでムカつく", "{g}はうざい"],
    "negated_praise": ["{g}を認めるつもりはない", "{g}と同じ扱いなんてありえない", "{g}に権利なんか必要ない",
                       "{g}を仲間だなんて思えない", "{g}は普通の人間じゃない", "{g}はこの国にいらない"],
    "dehumanise_threat": ["{g}なんか死ねばいい", "{g}は全員追い出せ", "{g}は虫けら同然", "{g}を駆除しろ",
                          "{g}は閉じ込めておけ", "{g}はまとめて叩き出せ", "{g}は動物と同じ"],
}

EN_FREE = [
    (0, "My wife is Muslim and the most patient person on earth."), (0, "As a gay man I'm tired of being a punchline."),
    (0, "Grandma is deaf and still beats everyone at cards."), (0, "I don't hate anyone for who they love."),
    (0, "Calling immigrants invaders is dehumanising and wrong."), (0, "The slur he used was reported to the mods."),
    (0, "Our new neighbours are from Syria and they brought us baklava."), (0, "Being trans is not a mental illness."),
    (0, "I'm Black and proud of it."), (0, "Women can do any job men can do."),
    (0, "Refugee kids in my class learned English in a year, incredible."), (0, "She's Jewish and runs the food bank."),
    (0, "People who say disabled folks are lazy have never met one."), (0, "Nothing wrong with being an immigrant."),
    (0, "He wrote that Muslims are terrorists, which is a lie, and got suspended."),
    (0, "Love my gay brother more than anything."), (0, "The trans woman in the story is a hero."),
    (0, "Honestly? Mexican food and Mexican people both rule."), (0, "Asian grandmas are the best cooks, fight me."),
    (0, "Racist comments like that one get you banned here."),
    (1, "Muslims should go back to the desert."), (1, "Women are only good for one thing."),
    (1, "Gay people are perverts, period."), (1, "Immigrants are stealing our jobs and our homes."),
    (1, "Trans people need therapy, not rights."), (1, "Black people ruin every neighbourhood they move into."),
    (1, "Disabled people should stay at home where nobody has to see them."), (1, "Jews can't be trusted."),
    (1, "Refugees are invaders, treat them like it."), (1, "Asians all look the same and eat dogs."),
]

JA_FREE = [
    (0, "外国人のお客さん、みんな礼儀正しくて好き"), (0, "うちの部署の女性陣、ほんと頼りになる"),
    (0, "障害のある兄を誇りに思ってる"), (0, "ゲイだってカミングアウトしてくれた友達、前より仲良くなった"),
    (0, "在日の友達の結婚式、感動した"), (0, "移民を犯罪者扱いする記事、ひどすぎる"),
    (0, "「女は家にいろ」って言う人、まだいるんだね。悲しい"), (0, "同性愛って別に特別なことじゃないよね"),
    (0, "ベトナム人の実習生の子、日本語の上達がすごい"), (0, "差別的なあだ名で呼ぶのはやめよう"),
    (0, "中国の人たちと仕事して、学ぶことばっかり"), (0, "外国人だから怖いとか、そんなの偏見だよ"),
    (0, "トランス女性の友人が職場で認められてうれしい"), (0, "高齢者に優しい街づくりって大事"),
    (0, "「障害者は邪魔」ってツイート、炎上してたね。当然"), (0, "車椅子ユーザーの視点、すごく勉強になった"),
    (0, "韓国の友達からキムチもらった、うまい"), (0, "アイヌ語の地名って面白い"),
    (0, "ハーフだからって特別扱いしないでほしい、って本人が言ってた"), (0, "LGBTの人たちが安心して暮らせる町に"),
    (1, "外国人は日本に来るな"), (1, "女が政治に口出しすんな"), (1, "ホモとか気持ち悪すぎて無理"),
    (1, "チョンは国に帰れ"), (1, "障害者は迷惑だから外に出るな"), (1, "年寄りは社会の寄生虫"),
    (1, "移民なんか全員送り返せ"), (1, "中国人は出ていけよ"), (1, "トランスとか気持ち悪い"),
    (1, "生活保護の連中は働けよクズ"),
]


def fill(template: str, group: str) -> str:
    return template.replace("{g}", group).replace("{G}", group[:1].upper() + group[1:])


def templated(groups: list[str], families: dict[str, list[str]], label: int, seed: int) -> list[dict]:
    generator = random.Random(seed)
    rows = []
    for kind, templates in families.items():
        for number, template in enumerate(templates):
            for group in groups:
                if generator.random() < SHARE:
                    rows.append({"text": fill(template, group), "label": label, "kind": kind,
                                 "template": f"{kind}{number}", "split": "train"})
    return rows


def write(name: str, rows: list[dict]) -> None:
    rows = list({row["text"]: row for row in rows}.values())
    with open(CORPUS / name, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)} lines, {sum(row['label'] for row in rows)} toxic")


def main() -> None:
    free = lambda lines: [{"text": t, "label": label, "kind": "free", "template": f"free{i}", "split": "train"}
                          for i, (label, t) in enumerate(lines)]
    write("en_identity_train.jsonl", templated(EN_GROUPS, EN_BENIGN, 0, 1) + templated(EN_GROUPS, EN_TOXIC, 1, 2)
          + free(EN_FREE))
    write("ja_identity_train.jsonl", templated(JA_GROUPS, JA_BENIGN, 0, 3) + templated(JA_GROUPS, JA_TOXIC, 1, 4)
          + free(JA_FREE))


if __name__ == "__main__":
    main()
