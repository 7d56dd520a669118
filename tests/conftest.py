"""Shared fixtures: a tiny random Llama and a byte-level BPE tokenizer, built locally in seconds (no hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "How do I reset the kettle? Hold Temp and Power for ten seconds.",
    "The warranty is two years. Thank you for contacting support.",
    "ケトルをリセットするには、温度ボタンと電源ボタンを10秒間押し続けてください。",
    "保証期間は2年間です。お問い合わせありがとうございます。",
    "user assistant system hello world 0123456789",
]


@pytest.fixture(autouse=True)
def gate_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own cache of base-model gate outputs, never the user's (~/.cache/alignpipe/gate_baseline)."""
    path = tmp_path / "gate-cache"
    monkeypatch.setenv("ALIGNPIPE_GATE_CACHE", str(path))
    return path


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 5, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random Llama with its tokenizer, saved like any Hugging Face model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return path


ANSWERS = ["Hold Temp and Power for ten seconds.", "The warranty is two years.", "保証期間は2年間です。",
           "温度ボタンと電源ボタンを10秒間押し続けてください。"]
QUESTIONS = ["How do I reset the kettle?", "What is the warranty?", "保証期間は？", "リセット方法は？"]
# Held out: the same facts asked in words the training rows never use, so that "held-out" means unseen.
HELD_OUT_QUESTIONS = ["Can you tell me how to reset it?", "How long is the guarantee?", "保証は何年ですか？",
                      "リセットのやり方を教えて"]


def support_conversations(n: int, held_out: bool = False) -> list[dict]:
    """A trivially learnable set: a few fixed questions with fixed answers, English and Japanese."""
    pairs = list(zip(HELD_OUT_QUESTIONS if held_out else QUESTIONS, ANSWERS))
    rows = []
    for index in range(n):
        question, answer = pairs[index % len(pairs)]
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if index % 3 == 0:
            messages.insert(0, {"role": "system", "content": "You are a support assistant."})
        rows.append({"messages": messages})
    return rows


@pytest.fixture
def sft_files(tmp_path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", support_conversations(32)),
        "eval": write_jsonl(tmp_path / "eval.jsonl", support_conversations(8, held_out=True)),
    }


def tiny_recipe_text(folder: Path, model_dir: Path, train: Path, held_out: Path) -> str:
    """A recipe for the tiny model that trains fast and learns (high learning rate, short sequences)."""
    return f"""
run: {{name: tiny, output_root: {folder / "runs"}}}
model: {{base: {model_dir}, quantization: none}}
lora: {{r: 8, alpha: 16, dropout: 0.0}}
data: {{train: {train}, eval: {held_out}}}
train: {{max_steps: 12, batch_size: 4, max_length: 64, learning_rate: 5.0e-3, save_steps: 4, logging_steps: 2,
        precision: fp32, warmup_steps: 0}}
gate: {{enabled: false, prompts: 8, refusal_prompts: 8, max_new_tokens: 6, bootstrap_samples: 200,
       bias: {{stereotype_pairs: 24, templates: 6, bbq_items: 12}}, robustness: {{prompts: 4}}, capability: {{items: 8}}}}   # tests/gate turn it on
"""


@pytest.fixture
def tiny_recipe(tmp_path, tiny_model_dir, sft_files) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_recipe_text(tmp_path, tiny_model_dir, sft_files["train"], sft_files["eval"]), encoding="utf-8")
    return path


POLITE = ["The warranty is two years.", "Hold Temp and Power for ten seconds.", "保証期間は2年間です。"]
RUDE = ["Go away.", "Read the manual yourself.", "知らないよ。"]


def separable_pairs(n: int, held_out: bool = False) -> list[dict]:
    """Preference pairs a tiny model can learn: polite answers chosen, rude ones rejected (held out: other questions)."""
    questions = (["How long is the guarantee?", "Can you tell me how to reset it?", "保証は何年ですか？", "Hi there"]
                 if held_out else ["What is the warranty?", "How do I reset the kettle?", "保証期間は？", "Hello"])
    return [
        {
            "prompt": [{"role": "user", "content": questions[i % len(questions)]}],
            "chosen": [{"role": "assistant", "content": POLITE[i % len(POLITE)]}],
            "rejected": [{"role": "assistant", "content": RUDE[(i // 2) % len(RUDE)]}],
        }
        for i in range(n)
    ]


@pytest.fixture
def one_thread():
    """Torch on one thread: a tiny model gains nothing from two, and on a shared machine two threads wait for each
    other (measured here under load 9: a tiny PPO run 2.5 s on one thread, 79 s on two)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
