"""The chat-template preflight: broken templates fail with the problem named, good ones pass, stages run it first."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignpipe import cli, data, sft_tokens, template_check
from conftest import CHATML_TEMPLATE, build_tokenizer, support_conversations

REPO = Path(__file__).parents[1]
NO_EOS_TEMPLATE = CHATML_TEMPLATE.replace("'<|im_end|>\n'", "'\n'")  # turns end with a newline only
DOUBLED_BOS_TEMPLATE = "{{ bos_token }}" + CHATML_TEMPLATE  # the fixture's BOS is <|im_start|>, which every turn opens
RENAMED_PROMPT_TEMPLATE = CHATML_TEMPLATE.replace("'<|im_start|>assistant\n'", "'<|im_start|>Assistant:\n'")


def run_cli(*argv: object) -> int:
    return cli.main([str(arg) for arg in argv])


def template_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.jinja"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_template_passes(tiny_recipe, capsys):
    assert run_cli("check-template", tiny_recipe) == 0
    assert "Chat template OK on 32 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (NO_EOS_TEMPLATE, ["[end_of_turn]", "does not end with the EOS token '<|im_end|>'", "never learns to stop"]),
        (DOUBLED_BOS_TEMPLATE, ["[doubled_special]", "doubled BOS '<|im_start|>' at tokens 0-1",
                                "'<|im_start|>' '<|im_start|>'"]),
        (RENAMED_PROMPT_TEMPLATE, ["[generation_prompt]", "generation prompt is not a prefix"]),
    ],
)
def test_a_broken_template_fails_naming_the_problem_and_the_stage_stops_before_training(
    tiny_recipe, tmp_path, capsys, template, expected
):
    path = template_file(tmp_path, template)
    assert run_cli("check-template", tiny_recipe, f"model.chat_template={path}") == 2
    err = capsys.readouterr().err
    assert "Chat template preflight failed on" in err and "sample 0:" in err and "Traceback" not in err
    for text in expected:
        assert text in err

    assert run_cli("sft", tiny_recipe, f"model.chat_template={path}", "sft.assistant_only_loss=false") == 2
    assert expected[0] in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # failed before a run directory or a model


def test_a_loss_mask_that_misses_the_end_of_turn_is_caught(monkeypatch):
    tokenizer = build_tokenizer()
    real = sft_tokens.tokenize_sft_record

    def mask_one_short(record, tokenizer, assistant_only_loss):
        row = real(record, tokenizer, assistant_only_loss)
        if "assistant_masks" in row:
            last = max(i for i, bit in enumerate(row["assistant_masks"]) if bit)
            row["assistant_masks"][last] = 0
        return row

    records = support_conversations(4)
    assert template_check.check_records(tokenizer, records, True) == (4, [])
    monkeypatch.setattr(sft_tokens, "tokenize_sft_record", mask_one_short)
    checked, problems = template_check.check_records(tokenizer, records, True)
    assert {problem.check for problem in problems} == {"loss_mask"}
    assert "answer tokens not trained: '\\n'" in problems[0].message


def test_preference_and_prompt_records_are_checked_too():
    tokenizer = build_tokenizer()
    tokenizer.chat_template = NO_EOS_TEMPLATE
    pair = {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello."}],
            "rejected": [{"role": "assistant", "content": "Go away."}]}
    _, problems = template_check.check_records(tokenizer, [pair], False)
    assert [problem.check for problem in problems] == ["end_of_turn", "end_of_turn"]  # chosen and rejected
    tokenizer.chat_template = DOUBLED_BOS_TEMPLATE
    _, problems = template_check.check_records(tokenizer, [{"prompt": [{"role": "user", "content": "Hi"}]}], False)
    assert [problem.check for problem in problems] == ["doubled_special"]


def test_show_tokens_marks_the_trained_spans(tiny_recipe, capsys):
    assert run_cli("show-tokens", tiny_recipe, "--n", "2") == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2
    # The answer and its end-of-turn token are trained; the user turn and the generation prompt are not.
    assert "<|im_start|>assistant⏎\n[[Hold Temp and Power for ten seconds.<|im_end|>⏎\n]]" in out
    assert "[[<|im_start|>user" not in out


def test_demo_data_passes_with_a_chatml_tokenizer():
    records = data.load_records(REPO / "data/demo/sft_train.jsonl", "sft")
    checked, problems = template_check.check_records(build_tokenizer(), records, True)
    assert checked == template_check.DEFAULT_SAMPLES and problems == []


@pytest.mark.slow
def test_demo_recipe_passes_the_preflight(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    for stage in ("sft", "rm", "rlhf"):
        assert run_cli("check-template", "recipes/demo.yaml", "run.output_root=/nonexistent", "--stage", stage) == 0
        assert "Chat template OK on 64 samples" in capsys.readouterr().out
