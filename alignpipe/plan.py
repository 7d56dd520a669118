"""`alignpipe plan`: peak GPU memory, training FLOPs and time of a stage, from the model's config alone.

    alignpipe plan recipes/llama3-8b-qlora-sft.yaml --gpu rtx4090
    alignpipe plan recipes/llama3-8b-qlora-dpo.yaml --stage rlhf --gpu a100 --json

No weights are loaded: the shape comes from a local config.json (the embedded model, a local path, the Hugging
Face cache) or, for a hub id that is not on disk, from KNOWN_MODELS below. Sizes are in GiB (2**30 bytes).
Measured against the embedded model on CPU: see bench/plan_vs_measured.py and README "Scaling up".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignpipe.algorithms import ALGORITHMS, PREFERENCE, Algorithm
from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError

GIB = 2**30

# Memory (GiB as sold: 24 GB cards hold 24 GiB) and dense BF16 tensor TFLOPS with FP32 accumulate, from the
# vendors' datasheets and architecture whitepapers (Ampere GA102, Ada, A100, H100 SXM).
GPUS: dict[str, tuple[float, float]] = {
    "rtx3090": (24, 71.0),
    "rtx4090": (24, 165.2),
    "a10": (24, 125.0),
    "l4": (24, 121.0),
    "rtx-a6000": (48, 154.8),
    "l40s": (48, 362.0),
    "a100-40gb": (40, 312.0),
    "a100": (80, 312.0),
    "h100": (80, 989.0),
    "h200": (141, 989.0),
}

# CUDA context, cuBLAS workspaces and allocator slack: what nvidia-smi shows beyond the tensors (typical, not exact).
CUDA_OVERHEAD_GIB = 0.75


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only Llama-style transformer (llama, mistral, qwen2; gemma3_text, whose layers have
    four RMSNorms and normalise q and k per head) that size its training."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    attention_bias: bool = False
    norms_per_layer: int = 2  # Llama: before attention and before the MLP; Gemma 3: before and after each
    qk_norm: bool = False  # Gemma 3: an RMSNorm over head_dim on q and on k


_LLAMA3_8B = ModelShape(128256, 4096, 14336, 32, 32, 8, 128, False)
_LLAMA3_70B = ModelShape(128256, 8192, 28672, 80, 64, 8, 128, False)
# config.json values of well-known hub models, so that plan works offline for a recipe that names one.
KNOWN_MODELS: dict[str, ModelShape] = {
    "meta-llama/Meta-Llama-3-8B": _LLAMA3_8B,
    "meta-llama/Meta-Llama-3-8B-Instruct": _LLAMA3_8B,
    "meta-llama/Llama-3.1-8B": _LLAMA3_8B,
    "meta-llama/Llama-3.1-8B-Instruct": _LLAMA3_8B,
    "meta-llama/Meta-Llama-3-70B-Instruct": _LLAMA3_70B,
    "meta-llama/Llama-3.1-70B-Instruct": _LLAMA3_70B,
    "meta-llama/Llama-3.2-1B-Instruct": ModelShape(128256, 2048, 8192, 16, 32, 8, 64, True),
    "meta-llama/Llama-3.2-3B-Instruct": ModelShape(128256, 3072, 8192, 28, 24, 8, 128, True),
    "mistralai/Mistral-7B-Instruct-v0.3": ModelShape(32768, 4096, 14336, 32, 32, 8, 128, False),
    "Qwen/Qwen2.5-0.5B-Instruct": ModelShape(151936, 896, 4864, 24, 14, 2, 64, True, True),
    "Qwen/Qwen2.5-7B-Instruct": ModelShape(152064, 3584, 18944, 28, 28, 4, 128, False, True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": ModelShape(49152, 576, 1536, 30, 9, 3, 64, True),
    "google/gemma-3-270m": ModelShape(262144, 640, 2048, 18, 4, 1, 256, True, norms_per_layer=4, qk_norm=True),
    # LLM-jp 3 (Apache-2.0, Japanese + English), the base of recipes/ja-domain/.
    "llm-jp/llm-jp-3-3.7b": ModelShape(99584, 3072, 8192, 28, 24, 24, 128, False),
    "llm-jp/llm-jp-3-13b": ModelShape(99584, 5120, 13824, 40, 40, 40, 128, False),
}

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def shape_from_config(config: Any) -> ModelShape:
    if config.model_type not in ("llama", "mistral", "qwen2", "gemma3_text"):
        raise AlignpipeError("plan knows Llama-style models (llama, mistral, qwen2) and gemma3_text, not "
                             f"model_type={config.model_type}.")
    gemma = config.model_type == "gemma3_text"
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return ModelShape(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads or config.num_attention_heads,
        head_dim=head_dim,
        tie_word_embeddings=bool(config.tie_word_embeddings),
        attention_bias=bool(getattr(config, "attention_bias", config.model_type == "qwen2")),
        norms_per_layer=4 if gemma else 2,
        qk_norm=gemma,
    )


def model_shape(base: str) -> ModelShape:
    """The shape of `model.base`, from a config.json on disk or the table; never downloads."""
    from transformers import AutoConfig

    from alignpipe.models import resolve_base

    path = resolve_base(base)
    try:
        return shape_from_config(AutoConfig.from_pretrained(path, local_files_only=True))
    except (OSError, ValueError):
        pass
    if base in KNOWN_MODELS:
        return KNOWN_MODELS[base]
    raise AlignpipeError(f"No config.json for {base!r} on disk and it is not in alignpipe's table of known models "
                         f"({', '.join(KNOWN_MODELS)}); point model.base at a local model directory.")


def linear_shapes(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each linear layer of one decoder layer."""
    h, q, kv, i = shape.hidden_size, shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim, shape.intermediate_size
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def parameter_counts(shape: ModelShape, lora_r: int, target_modules: list[str] | str, reward_head: bool) -> dict[str, int]:
    """Exact parameter counts; `total` counts the adapter too, as peft's print_trainable_parameters does."""
    linears = linear_shapes(shape)
    linear = shape.num_layers * sum(fan_in * fan_out for fan_in, fan_out in linears.values())
    bias = shape.num_layers * (linears["q_proj"][1] + 2 * linears["k_proj"][1]) if shape.attention_bias else 0
    norms = (shape.norms_per_layer * shape.num_layers + 1) * shape.hidden_size
    norms += 2 * shape.num_layers * shape.head_dim if shape.qk_norm else 0
    embedding = shape.vocab_size * shape.hidden_size
    if reward_head:  # a one-score head replaces the LM head
        head = shape.hidden_size
    else:
        head = 0 if shape.tie_word_embeddings else embedding
    targets = LINEAR_MODULES if target_modules == "all-linear" else target_modules
    unknown = sorted(set(targets) - set(LINEAR_MODULES))
    if unknown:
        raise AlignpipeError(f"lora.target_modules {unknown} are not linear layers of this model: {', '.join(LINEAR_MODULES)}")
    lora = shape.num_layers * sum(lora_r * (linears[name][0] + linears[name][1]) for name in targets)
    # The reward head is trained in full; peft keeps a trainable copy of it beside the original (modules_to_save).
    trainable = lora + (head if reward_head else 0)
    base = linear + bias + norms + embedding + head
    return {"base": base, "quantizable": linear, "lora": lora, "trainable": trainable, "total": base + trainable}


def optimizer_bytes_per_param(optimizer: str) -> float:
    """Optimizer state per trainable parameter: AdamW keeps two fp32 moments, 8-bit AdamW two 8-bit ones."""
    if "8bit" in optimizer:
        return 2.0
    if optimizer.startswith("sgd"):
        return 0.0
    return 8.0


def activation_bytes_per_token_layer(shape: ModelShape, dtype_bytes: int, lora_dropout: bool) -> int:
    """What autograd keeps per token in one decoder layer of a frozen base with LoRA, attention by SDPA/flash.

    Counted from transformers' Llama layer: each RMSNorm keeps its fp32 input and its output (6h bytes in bf16),
    the normalised inputs of the projections (h each), SDPA keeps q, k, v and its output (2h + 2kv), the MLP keeps
    gate, silu(gate), up and their product (4i). A frozen linear keeps nothing for its own weights; LoRA's A keeps
    its input, which is shared with the base layer unless dropout makes a copy (plus a one-byte mask).
    """
    h, kv, i = shape.hidden_size, shape.num_kv_heads * shape.head_dim, shape.intermediate_size
    norms = shape.norms_per_layer * (4 * h + dtype_bytes * h)
    attention = dtype_bytes * (h + 2 * kv + h + h)  # q, k, v, output; the normalised input
    mlp = dtype_bytes * (h + 4 * i)
    dropout = (dtype_bytes + 1) * (3 * h + h + 2 * h + i) if lora_dropout else 0
    return norms + attention + mlp + dropout


def memory_components(recipe: Recipe, stage: str, shape: ModelShape, counts: dict[str, int],
                      algorithm: Algorithm | None) -> tuple[dict[str, float], dict[str, float], int]:
    """Peak memory by component (bytes), activations with and without checkpointing, and sequences per step."""
    train, model = recipe.train, recipe.model
    dtype_bytes = 4 if train.precision == "fp32" else 2

    # Weights: NF4 is half a byte, plus double-quantized scales (an 8-bit absmax per 64 weights and an fp32 per 256
    # of those, QLoRA section 3); int8 a byte; the embeddings, norms and head stay in the compute dtype.
    quantized_bytes = {"4bit": 0.5 + 1 / 64 + 4 / (64 * 256), "8bit": 1.0, "none": dtype_bytes}[model.quantization]
    unquantized = counts["base"] - counts["quantizable"]
    weights = counts["quantizable"] * quantized_bytes + unquantized * dtype_bytes

    # Sequences per step: DPO-family and reward models run chosen and rejected together. PPO's train.batch_size is
    # its rollout; one training pass runs a micro-batch of it, and it trains a critic (an adapter and a value head).
    pairs = stage == "rm" or (algorithm is not None and algorithm.data == PREFERENCE)
    sequences = train.batch_size * (2 if pairs else 1)
    critic = algorithm is not None and algorithm.critic
    if critic:
        sequences = max(1, train.batch_size // (recipe.rlhf.ppo.num_mini_batches * train.gradient_accumulation_steps))
        counts["trainable"] += counts["lora"] + shape.hidden_size + 1
    tokens = sequences * train.max_length
    per_layer = activation_bytes_per_token_layer(shape, dtype_bytes, recipe.lora.dropout > 0)
    activations_full = tokens * per_layer * shape.num_layers
    # Checkpointing keeps each layer's input and recomputes one layer at a time in the backward pass.
    activations_checkpointed = tokens * (dtype_bytes * shape.hidden_size * shape.num_layers + per_layer)
    # Logits in the compute dtype, their fp32 copy for the loss, and its fp32 gradient (a reward head has none);
    # PPO computes them for the answer tokens only, plus the entropy's fp32 probabilities.
    logits = 0 if stage == "rm" else tokens * shape.vocab_size * (dtype_bytes + 4 + 4)
    if critic:
        logits = sequences * (recipe.rlhf.max_completion_length + 1) * shape.vocab_size * (dtype_bytes + 4 + 4 + 4)

    # Reference for DPO-family, KTO and online RL: a frozen adapter copy (a parent adapter), nothing (a fresh
    # adapter: the base with the adapter off), or, without PEFT, a second model.
    reference = 0.0
    if uses_reference_forward(recipe, algorithm):
        reference = counts["lora"] * 4 if recipe.rlhf.parent != "none" else 0.0
    kv_cache = 0
    if algorithm is not None and algorithm.online:  # generation keeps keys and values of every generated sequence
        generated_tokens = train.batch_size * train.max_length if critic else tokens
        kv_cache = 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * dtype_bytes * generated_tokens

    trainable = counts["trainable"]  # PPO's critic added above
    components = {
        "weights": weights,
        "adapter_weights": trainable * 4,  # peft keeps adapters in fp32 under bf16 autocast
        "gradients": trainable * 4,
        "optimizer_states": trainable * optimizer_bytes_per_param(train.optimizer),
        "activations": activations_checkpointed if model.uses_gradient_checkpointing() else activations_full,
        "logits": logits,
        "reference_model": reference,
        "reward_model": reward_model_bytes(recipe, algorithm, shape, quantized_bytes, dtype_bytes),
        "generation_kv_cache": kv_cache,
        "cuda_overhead": CUDA_OVERHEAD_GIB * GIB,
    }
    return components, {"full": activations_full, "checkpointed": activations_checkpointed}, sequences


def plan_stage(recipe: Recipe, stage: str, gpu: str, mfu: float | None = None, nproc: int = 1,
               shape: ModelShape | None = None) -> dict[str, Any]:
    """The estimate for one stage as a dict (the --json output)."""
    if gpu not in GPUS:
        raise AlignpipeError(f"Unknown --gpu {gpu}; known: {', '.join(GPUS)}")
    shape = shape or model_shape(recipe.model.base)
    model = recipe.model
    algorithm = ALGORITHMS[recipe.rlhf.algorithm] if stage == "rlhf" else None
    counts = parameter_counts(shape, recipe.lora.r, recipe.lora.target_modules, reward_head=stage == "rm")
    components, activations, sequences = memory_components(recipe, stage, shape, counts, algorithm)
    checkpointing = model.uses_gradient_checkpointing()
    trainable = counts["trainable"]
    peak = sum(components.values())
    memory_gib, peak_tflops = GPUS[gpu]
    flops = training_flops(recipe, stage, shape, counts, sequences)
    if mfu is None:
        mfu = 0.25 if model.quantization != "none" else 0.35
    seconds = flops["train_flops"] / (peak_tflops * 1e12 * mfu * nproc)
    return {
        "model": recipe.model.base,
        "stage": stage if algorithm is None else f"{stage} ({algorithm.name})",
        "gpu": gpu,
        "gpu_memory_gb": memory_gib,
        "total_params": counts["total"],
        "trainable_params": trainable,
        "lora_params": counts["lora"],
        "components_gb": {name: round(value / GIB, 4) for name, value in components.items()},
        "components_bytes": {name: int(value) for name, value in components.items()},
        "activations_gb_without_checkpointing": round(activations["full"] / GIB, 3),
        "activations_gb_with_checkpointing": round(activations["checkpointed"] / GIB, 3),
        "gradient_checkpointing": checkpointing,
        "peak_memory_gb": round(peak / GIB, 2),
        "fits": peak / GIB <= memory_gib,
        "headroom_gb": round(memory_gib - peak / GIB, 2),
        **flops,
        "mfu": mfu,
        "nproc": nproc,
        "train_hours": round(seconds / 3600, 2),
    }


def reward_model_bytes(recipe: Recipe, algorithm: Algorithm | None, shape: ModelShape, quantized_bytes: float,
                       dtype_bytes: int) -> float:
    """The reward model online RL scores with: for PPO an adapter and score head on the policy's own base; for
    GRPO/RLOO a second copy of the base as a sequence classifier (quantized like the policy's), with its adapter."""
    if algorithm is None or not algorithm.online:
        return 0.0
    counts = parameter_counts(shape, recipe.lora.r, recipe.lora.target_modules, reward_head=True)
    adapter_and_head = counts["lora"] * 4 + shape.hidden_size * 4  # the rm stage's rank taken as lora.r
    if algorithm.critic:
        return adapter_and_head
    unquantized = counts["base"] - counts["quantizable"]
    return counts["quantizable"] * quantized_bytes + unquantized * dtype_bytes + adapter_and_head


def uses_reference_forward(recipe: Recipe, algorithm: Algorithm | None) -> bool:
    """A frozen reference runs beside the policy, unless DPO computed its log-probabilities once beforehand."""
    if algorithm is None or not algorithm.reference:
        return False
    return not (algorithm.name == "dpo" and recipe.rlhf.precompute_ref_log_probs)


def training_flops(recipe: Recipe, stage: str, shape: ModelShape, counts: dict[str, int], sequences: int) -> dict[str, Any]:
    """Model FLOPs of the whole run: 2N per token forward plus attention (PaLM, Chowdhery et al. 2022, app. B).

    Training is three forwards for a full fine-tune (6ND) and two with a frozen base and LoRA (4ND: the backward
    pass computes input gradients only). Reference forwards (DPO, KTO, online RL) add 2ND; generation 2N per token.
    Tokens are counted at max_length, an upper bound when examples are shorter and not packed.
    """
    train = recipe.train
    steps = train.max_steps if train.max_steps > 0 else _steps_for_epochs(recipe)
    steps_tokens = steps * train.gradient_accumulation_steps * sequences * train.max_length
    matmul_params = counts["quantizable"] + (shape.vocab_size * shape.hidden_size if stage != "rm" else 0)
    attention = 4 * shape.num_layers * shape.num_heads * shape.head_dim * train.max_length
    forward_per_token = 2 * matmul_params + attention
    passes = 2.0  # LoRA on a frozen base: forward + input-gradient backward
    algorithm = ALGORITHMS[recipe.rlhf.algorithm] if stage == "rlhf" else None
    if algorithm is not None and algorithm.reference:
        passes += 1.0  # the reference's forward
    if algorithm is not None and algorithm.critic:
        # PPO per answer: policy, reference, critic and reward forwards on the rollout, then per epoch a policy
        # and a critic forward + backward; its rollout is train.batch_size answers however it is split.
        passes = 4.0 + 4.0 * recipe.rlhf.ppo.epochs
        sequences = train.batch_size
        steps_tokens = steps * sequences * train.max_length
    total = passes * forward_per_token * steps_tokens
    if algorithm is not None and algorithm.online:
        total += forward_per_token * steps * sequences * recipe.rlhf.max_completion_length
    return {"train_tokens": steps_tokens, "steps": steps, "flops_per_token": passes * forward_per_token,
            "train_flops": float(total)}


def _steps_for_epochs(recipe: Recipe) -> int:
    from alignpipe.data import count_rows

    if recipe.data.train is None:
        raise AlignpipeError("train.max_steps=-1 trains for epochs; plan needs data.train to count the examples.")
    examples = count_rows(recipe.data.train, recipe.data)
    per_step = recipe.train.batch_size * recipe.train.gradient_accumulation_steps
    return max(1, int(examples * recipe.train.epochs / per_step))


def format_plan(estimate: dict[str, Any], title: str) -> str:
    lines = [f"Plan for {title}: {estimate['model']} on {estimate['gpu']} ({estimate['gpu_memory_gb']:g} GB)", ""]
    lines.append(f"  parameters: {estimate['total_params'] / 1e9:.3f} B total, {estimate['trainable_params'] / 1e6:.2f} M "
                 f"trainable ({100 * estimate['trainable_params'] / estimate['total_params']:.3f}%)")
    lines += ["", f"  {'peak memory part':<26}{'GB':>9}"]
    for name, value in estimate["components_gb"].items():
        lines.append(f"  {name.replace('_', ' '):<26}{value:>9.2f}")
    lines.append(f"  {'total (peak estimate)':<26}{estimate['peak_memory_gb']:>9.2f}")
    lines.append(f"  activations: {estimate['activations_gb_without_checkpointing']:.2f} GB without gradient checkpointing, "
                 f"{estimate['activations_gb_with_checkpointing']:.2f} GB with (it is "
                 f"{'on' if estimate['gradient_checkpointing'] else 'off'})")
    lines.append(f"  compute: {estimate['steps']} steps, {estimate['train_tokens'] / 1e6:.1f} M tokens, "
                 f"{estimate['train_flops']:.3g} FLOPs -> {estimate['train_hours']:.2f} h on {estimate['nproc']} x "
                 f"{estimate['gpu']} at {estimate['mfu']:.0%} MFU")
    if estimate["fits"]:
        verdict = f"fits in {estimate['gpu_memory_gb']:g} GB with {estimate['headroom_gb']:.1f} GB headroom"
    else:
        verdict = (f"does not fit in {estimate['gpu_memory_gb']:g} GB: needs {estimate['peak_memory_gb']:.1f} GB "
                   f"({-estimate['headroom_gb']:.1f} GB over); try gradient checkpointing, a smaller train.batch_size "
                   "with more gradient_accumulation_steps, a shorter max_length, or 4-bit")
    lines += ["", f"Verdict: {verdict}."]
    return "\n".join(lines)


def plan_recipe(recipe_path: str, overrides: list[str], stage: str, gpu: str, mfu: float | None, nproc: int,
                as_json: bool) -> None:
    """`alignpipe plan`: the estimate for one stage of a recipe, as a table or JSON."""
    import json

    from alignpipe.recipe_loading import load_recipe

    recipe = load_recipe(recipe_path, stage, overrides)
    estimate = plan_stage(recipe, stage, gpu, mfu=mfu, nproc=nproc)
    print(json.dumps(estimate, indent=2) if as_json else format_plan(estimate, f"{recipe_path} ({stage})"))
