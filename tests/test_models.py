"""Model loading: quantization modes, LoRA, chat templates, and the 4-bit CPU eval/train pitfall."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import pytest
import torch

from alignpipe import models
from alignpipe.config import LoraConfig, ModelConfig
from alignpipe.errors import AlignpipeError


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_tiny_model_loads_and_takes_lora(tiny_model_dir, quantization):
    from peft import get_peft_model

    model = models.load_causal_lm(str(tiny_model_dir), ModelConfig(quantization=quantization))
    if quantization == "4bit":
        import bitsandbytes as bnb

        assert any(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())
    peft_model = get_peft_model(model, models.lora_config(LoraConfig(r=4, alpha=8), "CAUSAL_LM"))
    trainable = [name for name, param in peft_model.named_parameters() if param.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # all-linear: attention and MLP projections of every layer get adapters
    assert any("mlp.down_proj.lora_A" in name for name in trainable)
    assert any("self_attn.q_proj.lora_A" in name for name in trainable)


def test_evaluating_a_4bit_model_does_not_break_its_gradients(tiny_model_dir):
    from peft import get_peft_model

    def lora_gradients(evaluate_first: bool) -> dict[str, torch.Tensor]:
        model = models.load_causal_lm(str(tiny_model_dir), ModelConfig(quantization="4bit"))
        torch.manual_seed(0)
        model = get_peft_model(model, models.lora_config(LoraConfig(r=4, alpha=8), "CAUSAL_LM"))
        for name, param in model.named_parameters():
            if "lora_B" in name:  # non-zero B so that gradients reach every A
                torch.nn.init.normal_(param, std=0.02, generator=torch.Generator().manual_seed(len(name)))
        ids = torch.arange(2, 26).reshape(2, 12)
        if evaluate_first:
            model.eval()
            with torch.no_grad():
                model(input_ids=ids)
        model.train()
        model(input_ids=ids, labels=ids).loss.backward()
        return {name: param.grad.clone() for name, param in model.named_parameters() if param.requires_grad}

    fresh, after_eval = lora_gradients(False), lora_gradients(True)
    for name in fresh:
        assert torch.allclose(fresh[name], after_eval[name], atol=1e-5), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the gate scores the 4-bit base as it is")
def test_the_gate_scores_a_4bit_base_dense_with_the_weights_training_saw(tiny_model_dir):
    """On a CPU the gate's base is dequantized once (models.load_base_for_scoring): the same function as the 4-bit
    model in training (which dequantizes on every forward), without bitsandbytes' slow CPU 4-bit matmul."""
    import bitsandbytes as bnb

    config = ModelConfig(quantization="4bit")
    trained_on = models.load_causal_lm(str(tiny_model_dir), config, torch.float32, for_training=True).eval()
    dense, computed_as = models.load_base_for_scoring(str(tiny_model_dir), config)
    assert computed_as.startswith("dequantized")
    assert not any(isinstance(module, bnb.nn.Linear4bit) for module in dense.modules())
    ids = torch.arange(2, 26).reshape(2, 12)
    with torch.no_grad():  # the 4-bit layer computes in its compute dtype (bf16 where native): bf16 rounding apart
        assert torch.allclose(trained_on(input_ids=ids).logits, dense(input_ids=ids).logits, atol=5e-3)
    assert models.load_base_for_scoring(str(tiny_model_dir), ModelConfig(quantization="none"))[1] == "none float32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the gate scores the 4-bit base as it is")
def test_the_gate_scores_a_dense_base_with_the_adapter_merged_and_takes_it_out_after(tiny_model_dir):
    """collect.merged_for_scoring: the same logits as the adapter computed beside the weights, and afterwards the
    base and the other adapter are what they were."""
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    from alignpipe.gate.collect import merged_for_scoring

    dense, computed_as = models.load_base_for_scoring(str(tiny_model_dir), ModelConfig(quantization="4bit"))
    torch.manual_seed(0)
    lora = PeftLoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(dense, lora, adapter_name="candidate")
    model.add_adapter("baseline", lora)
    model.eval()
    ids = torch.arange(2, 26).reshape(2, 12)

    def logits(adapter: str | None, merged: bool) -> torch.Tensor:
        model.set_adapter(adapter or "candidate")
        with torch.no_grad(), (merged_for_scoring(model, adapter, computed_as) if merged else nullcontext()):
            if adapter is None:
                with model.disable_adapter():
                    return model(input_ids=ids).logits
            return model(input_ids=ids).logits

    separate = {name: logits(name, merged=False) for name in ("candidate", "baseline", None)}
    assert not torch.allclose(separate["candidate"], separate[None], atol=1e-3)  # the adapter does something
    assert torch.allclose(logits("candidate", merged=True), separate["candidate"], atol=1e-4)
    assert not any(getattr(module, "merged", False) for module in model.modules())  # taken out again
    for name, expected in separate.items():
        assert torch.allclose(logits(name, merged=False), expected, atol=1e-5), name


def test_missing_bitsandbytes_says_how_to_run_without(monkeypatch, tiny_model_dir):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(AlignpipeError, match="model.quantization=none"):
        models.load_causal_lm(str(tiny_model_dir), ModelConfig(quantization="4bit"))


def test_default_chat_template_when_the_base_has_none(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    loaded = models.load_tokenizer(str(tmp_path))
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    text = loaded.apply_chat_template(messages, tokenize=False)
    prompt = loaded.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert text.startswith(prompt)  # the generation prompt is a prefix of the training rendering
    assert f"hello{loaded.eos_token}" in text  # every turn ends with EOS, so the model learns to stop


def test_tokenizer_keeps_its_own_template(tiny_model_dir):
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    assert "<|im_start|>" in tokenizer.chat_template


def test_missing_model_path_is_a_user_error(tmp_path):
    with pytest.raises(AlignpipeError, match="no-such-model"):
        models.load_tokenizer(str(tmp_path / "no-such-model"))
