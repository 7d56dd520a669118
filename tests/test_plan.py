"""alignpipe plan: exact parameter counts (checked against real models and peft) and hand-computed memory/FLOPs."""

from __future__ import annotations

import json

import pytest

from alignpipe import cli
from alignpipe.config import Recipe
from alignpipe.plan import GIB, KNOWN_MODELS, ModelShape, parameter_counts, plan_stage, shape_from_config

# hidden 64, intermediate 128, 2 layers, 4 heads of 16, 2 key/value heads, vocabulary 400, untied head
SMALL = ModelShape(vocab_size=400, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                   head_dim=16, tie_word_embeddings=False)


def small_llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)


def test_counts_by_hand():
    counts = parameter_counts(SMALL, lora_r=8, target_modules="all-linear", reward_head=False)
    # per layer: q 64*64 + k 64*32 + v 64*32 + o 64*64 + (gate, up, down) 3 * 64*128 = 36864
    assert counts["quantizable"] == 2 * 36864
    # + 5 RMSNorms of 64 + embedding 400*64 + head 400*64
    assert counts["base"] == 73728 + 320 + 25600 + 25600
    # LoRA r=8: 8 * (in + out) = q 1024 + k 768 + v 768 + o 1024 + 3 * 1536, per layer
    assert counts["lora"] == counts["trainable"] == 2 * 8192


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"]])
def test_counts_match_the_model_and_peft(targets):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    config = small_llama_config()
    assert shape_from_config(config) == SMALL
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    counts = parameter_counts(SMALL, lora_r=8, target_modules=targets, reward_head=False)
    assert counts["base"] == sum(parameter.numel() for parameter in model.parameters())
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets, task_type="CAUSAL_LM"))
    assert peft_model.get_nb_trainable_parameters() == (counts["trainable"], counts["total"])



def test_gemma3_counts_match_the_model_and_the_embedded_gemma():
    """Gemma 3's four norms a layer and its q/k norms: a small random one counted exactly; the table's 270M entry
    gives the 268,098,176 parameters transformers reports for the embedded Gemma 3 270M."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(vocab_size=500, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=32)
    shape = shape_from_config(config)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    counts = parameter_counts(shape, lora_r=8, target_modules="all-linear", reward_head=False)
    assert counts["base"] == sum(parameter.numel() for parameter in model.parameters())
    assert parameter_counts(KNOWN_MODELS["google/gemma-3-270m"], 16, "all-linear", False)["base"] == 268_098_176

def test_reward_model_counts_match_peft():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForSequenceClassification

    config = small_llama_config()
    config.num_labels = 1
    model = LlamaForSequenceClassification(config)
    counts = parameter_counts(SMALL, lora_r=4, target_modules="all-linear", reward_head=True)
    assert counts["base"] == sum(parameter.numel() for parameter in model.parameters())
    lora = LoraConfig(r=4, target_modules="all-linear", task_type="SEQ_CLS", modules_to_save=["score"])
    assert get_peft_model(model, lora).get_nb_trainable_parameters() == (counts["trainable"], counts["total"])


def small_recipe(**train) -> Recipe:
    return Recipe.model_validate({
        "model": {"quantization": "none", "gradient_checkpointing": False},
        "lora": {"r": 8, "dropout": 0.0},
        "train": {"batch_size": 4, "max_length": 64, "precision": "fp32", "max_steps": 10, **train},
    })


def test_memory_components_by_hand():
    estimate = plan_stage(small_recipe(), "sft", "rtx4090", shape=SMALL)
    parts = estimate["components_bytes"]
    lora, tokens = 16384, 4 * 64
    assert parts["weights"] == pytest.approx(125248 * 4, rel=1e-3)  # fp32, unquantized
    assert parts["adapter_weights"] == pytest.approx(lora * 4, rel=1e-3)
    assert parts["gradients"] == pytest.approx(lora * 4, rel=1e-3)
    assert parts["optimizer_states"] == pytest.approx(lora * 8, rel=1e-3)  # AdamW: two fp32 moments
    # fp32, per token and layer: norms 2 * (4*64 + 4*64) + attention 4 * (64 + 2*32 + 64 + 64) + MLP 4 * (64 + 4*128)
    per_token_layer = 1024 + 1024 + 2304
    assert parts["activations"] == pytest.approx(tokens * 2 * per_token_layer, rel=1e-3)
    # checkpointing keeps one 64-wide fp32 input per layer and recomputes one layer
    recipe = small_recipe().model_copy(update={"model": small_recipe().model.model_copy(update={"gradient_checkpointing": True})})
    checkpointed = plan_stage(recipe, "sft", "rtx4090", shape=SMALL)["components_bytes"]["activations"]
    assert checkpointed == tokens * (4 * 64 * 2 + per_token_layer)
    assert parts["logits"] == pytest.approx(tokens * 400 * (4 + 4 + 4), rel=1e-3)
    assert estimate["peak_memory_gb"] * GIB == pytest.approx(sum(parts.values()), abs=0.01 * GIB)
    assert estimate["trainable_params"] == lora and estimate["total_params"] == 125248 + lora


def test_quantization_and_8bit_optimizer_shrink_their_parts():
    full = plan_stage(small_recipe(), "sft", "rtx4090", shape=SMALL)
    nf4 = plan_stage(small_recipe(optimizer="paged_adamw_8bit").model_copy(
        update={"model": Recipe().model.model_copy(update={"quantization": "4bit"})}), "sft", "rtx4090", shape=SMALL)
    # 4-bit: linear weights at 0.5 byte + double-quant scales; embeddings, head and norms in the dtype (fp32 here)
    expected = 73728 * (0.5 + 1 / 64 + 4 / (64 * 256)) + (125248 - 73728) * 4
    assert nf4["components_bytes"]["weights"] == pytest.approx(expected, rel=1e-3)
    assert nf4["components_bytes"]["optimizer_states"] == full["components_bytes"]["optimizer_states"] / 4


def test_flops_are_four_nd_for_lora_on_a_frozen_base():
    estimate = plan_stage(small_recipe(), "sft", "h100", shape=SMALL, mfu=0.5)
    matmul = 73728 + 400 * 64  # layer linears + the LM head
    attention = 4 * 2 * 4 * 16 * 64  # 4 * layers * heads * head_dim * length
    tokens = 10 * 4 * 64
    assert estimate["train_flops"] == pytest.approx(2 * (2 * matmul + attention) * tokens)
    assert estimate["train_hours"] * 3600 == pytest.approx(estimate["train_flops"] / (989e12 * 0.5), abs=0.02)


def test_dpo_counts_chosen_and_rejected_and_the_reference_adapter():
    recipe = small_recipe()
    sft = plan_stage(recipe, "sft", "rtx4090", shape=SMALL)
    dpo = plan_stage(recipe, "rlhf", "rtx4090", shape=SMALL)
    assert dpo["components_bytes"]["logits"] == 2 * sft["components_bytes"]["logits"]
    assert dpo["components_bytes"]["reference_model"] == 16384 * 4
    # policy forward + backward + the reference's forward, on twice the sequences
    assert dpo["train_flops"] == pytest.approx(sft["train_flops"] * 2 * 3 / 2)


def test_plan_llama3_recipe_offline(capsys):
    assert cli.main(["plan", "recipes/llama3-8b-qlora-sft.yaml", "--gpu", "rtx4090"]) == 0
    text = capsys.readouterr().out
    assert "Verdict: fits in 24 GB with" in text
    assert cli.main(["plan", "recipes/llama3-8b-qlora-sft.yaml", "--gpu", "rtx4090", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["total_params"] == 8_030_261_248 + 41_943_040  # Llama 3 8B + LoRA r=16 on all linear layers
    assert estimate["trainable_params"] == 41_943_040
    assert estimate["fits"] is True and 8 < estimate["peak_memory_gb"] < 24
    assert {"peak_memory_gb", "trainable_params", "total_params", "train_flops", "fits"} <= set(estimate)


def test_plan_says_when_it_does_not_fit(capsys):
    assert cli.main(["plan", "recipes/llama3-8b-qlora-sft.yaml", "--gpu", "rtx4090", "model.gradient_checkpointing=false"]) == 0
    assert "does not fit in 24 GB" in capsys.readouterr().out


def test_unknown_gpu_and_unknown_model_are_user_errors(capsys):
    assert cli.main(["plan", "recipes/llama3-8b-qlora-sft.yaml", "--gpu", "rtx9999"]) == 2
    assert "Unknown --gpu rtx9999" in capsys.readouterr().err
    assert cli.main(["plan", "recipes/llama3-8b-qlora-sft.yaml", "model.base=someone/unknown-model"]) == 2
    assert "someone/unknown-model" in capsys.readouterr().err


def online_recipe(algorithm: str) -> Recipe:
    recipe = small_recipe()
    rlhf = recipe.rlhf.model_copy(update={"algorithm": algorithm, "max_completion_length": 16})
    return recipe.model_copy(update={"rlhf": rlhf})


def test_ppo_keeps_its_reward_model_on_the_policys_base_and_trains_a_critic():
    lora, hidden = 16384, 64
    ppo = plan_stage(online_recipe("ppo"), "rlhf", "rtx4090", shape=SMALL)
    grpo = plan_stage(online_recipe("grpo"), "rlhf", "rtx4090", shape=SMALL)
    parts = ppo["components_bytes"]
    # Policy and critic adapters are trained (the critic with a value head); reference and reward are frozen adapters.
    assert ppo["trainable_params"] == 2 * lora + hidden + 1
    assert parts["optimizer_states"] == pytest.approx((2 * lora + hidden + 1) * 8, rel=1e-3)
    assert parts["reference_model"] == lora * 4
    assert parts["reward_model"] == pytest.approx(lora * 4 + hidden * 4, rel=1e-3)
    # GRPO scores with a second copy of the base (a sequence classifier: no LM head, a one-row score head).
    second_base = (125248 - 400 * 64 + hidden) * 4
    assert grpo["components_bytes"]["reward_model"] == pytest.approx(second_base + lora * 4 + hidden * 4, rel=1e-3)
    # Logits of the answer tokens only: 4 answers x (16 + 1) positions x 400 entries x (fp32 logits + 3 fp32 copies)
    assert parts["logits"] == 4 * 17 * 400 * (4 + 4 + 4 + 4)
    # Per answer token: 4 forwards on the rollout, then 4 epochs of policy and critic forward + backward.
    assert ppo["flops_per_token"] == pytest.approx(grpo["flops_per_token"] * (4 + 4 * 4) / 3)


def test_plan_llama3_ppo_recipe_fits_24_gb(capsys):
    assert cli.main(["plan", "recipes/llama3-8b-qlora-ppo.yaml", "--stage", "rlhf", "--gpu", "rtx4090", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["stage"] == "rlhf (ppo)" and estimate["fits"] is True and estimate["peak_memory_gb"] < 24
    assert estimate["trainable_params"] == 2 * 41_943_040 + 4096 + 1
