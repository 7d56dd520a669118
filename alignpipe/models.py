"""Load base models and trained stages: 4-bit / 8-bit / full weights, LoRA configs, adapters (export: export.py).

The same code runs on CPU and GPU: bitsandbytes 4-bit (NF4) works on both, and the device is chosen here once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedTokenizerBase,
)

from alignpipe.config import LoraConfig, ModelConfig
from alignpipe.embedded import DEFAULT_CHAT_TEMPLATE, embedded_model_dir, is_embedded
from alignpipe.errors import AlignpipeError
from alignpipe.hardware import fast_compute_dtype, native_bf16
from alignpipe.ranks import local_rank


def resolve_base(base: str) -> str:
    """A loadable path or hub id for `model.base`; a local path must be a model directory."""
    if is_embedded(base):
        return str(embedded_model_dir(base))
    check_model_reference(base)
    return base


def check_model_reference(reference: str) -> None:
    """Refuse, with a message saying what is wrong, a path that is not a model directory and is no hub id either."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    path = Path(reference).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise AlignpipeError(f"{reference} has no config.json: not a model directory (a Hugging Face model folder "
                                 "holds config.json, the weights and the tokenizer files).")
        return
    if path.exists():
        raise AlignpipeError(f"{reference} is a file, not a model directory; give the folder that holds config.json.")
    try:
        validate_repo_id(reference)
    except HFValidationError as error:
        raise AlignpipeError(f"no such model directory: {reference} (and not a hub id: {error})") from None


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids generation stops on: the model's own and the tokenizer's EOS (the end-of-turn token of the template)."""
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    return list(dict.fromkeys([*ids, tokenizer.eos_token_id]))


def parent_or_base_tokenizer(parent: Path | None, model_config: ModelConfig) -> PreTrainedTokenizerBase:
    """A child stage's tokenizer: its parent's (saved with the adapter, carrying the chat template it was trained
    with), or the base model's with the recipe's chat template when it starts from the base."""
    if parent is not None:
        return load_tokenizer(str(parent / "adapter"))
    return load_tokenizer(resolve_base(model_config.base), model_config.chat_template)


def load_tokenizer(path: str, chat_template_file: str | None = None) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise AlignpipeError(_load_failure(path, error)) from None
    if chat_template_file:
        template_path = Path(chat_template_file)
        if not template_path.is_file():
            raise AlignpipeError(f"Chat template file not found: {template_path}")
        try:
            tokenizer.chat_template = template_path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise AlignpipeError(f"Chat template {template_path} is not UTF-8 text (a Jinja template).") from None
    elif not tokenizer.chat_template:
        print(f"warning: the tokenizer of {path} has no chat template; using alignpipe's default "
              "(<|role|> turns ending in EOS). Set model.chat_template to use the model's own format.", flush=True)
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(quantization: str) -> BitsAndBytesConfig | None:
    if quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:  # ImportError, or a broken native library
        raise AlignpipeError(
            f"model.quantization={quantization} needs bitsandbytes, which cannot be loaded here ({error}). "
            "Install it (pip install bitsandbytes) or run without quantization: model.quantization=none."
        ) from None
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    # QLoRA's settings (Dettmers et al. 2023): NF4 storage, double quantization of the scales, bf16 compute where
    # bf16 is native (on an AVX2-only CPU bf16 compute made a 4-bit forward 5.6x slower than fp32: hardware.py).
    # FSDP and ZeRO-3 flatten parameters of one dtype into shards: the packed 4-bit weights are then stored in a
    # bf16 container like the rest (peft's FSDP-QLoRA recipe); uint8 storage otherwise.
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=fast_compute_dtype(),
        bnb_4bit_quant_storage=torch.bfloat16 if shards_parameters() else torch.uint8,
    )


def shards_parameters() -> bool:
    """True in a process that `accelerate launch` started with FSDP or DeepSpeed ZeRO-3 (they shard the weights)."""
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    zero3 = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    return fsdp or zero3


def load_causal_lm(
    path: str, model_config: ModelConfig, dtype: torch.dtype = torch.bfloat16, for_training: bool = True
) -> Any:
    """The base model, quantized as the recipe says, on the GPU when there is one."""
    return _load_pretrained(AutoModelForCausalLM, path, model_config, dtype, for_training, {})


def load_base_for_scoring(path: str, model_config: ModelConfig) -> tuple[Any, str]:
    """The base for the gate's many forward passes, and the name of how it computes (part of every gate cache key).

    On a GPU, or not in 4-bit: as in training (fast 4-bit kernels there; an 8B base would not fit dense). On a CPU a
    4-bit base is dequantized once, before any forward, into dense float32 weights equal to the NF4 values the
    adapters were trained against (as training's CPU forward dequantizes them), and runs under bf16 autocast where the
    CPU computes bf16 natively: bitsandbytes' CPU 4-bit matmul was the gate's bottleneck (the demo's stereotype
    pairs on SmolLM2, 2 cores with AMX: 4-bit 50 s, dense fp32 28 s, dense under bf16 autocast 12 s; the same
    preference on 31 of 32 pairs). Dequantizing after a forward would read weights bitsandbytes has repacked.
    """
    model = load_causal_lm(path, model_config, torch.float32, for_training=False)
    if torch.cuda.is_available() or model_config.quantization != "4bit":  # 8-bit on a CPU: not measured, left as is
        return model, f"{model_config.quantization} float32"
    model = model.dequantize(dtype=torch.float32)
    return model, "dequantized bf16-autocast" if native_bf16() else "dequantized float32"


def load_sequence_classifier(
    path: str,
    model_config: ModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    parent_adapter: Path | None,
    dtype: torch.dtype = torch.bfloat16,
) -> Any:
    """A one-score head (reward model) on the base; with a parent, the parent's adapter, trainable, carries on.

    The parent's LoRA weights start the reward model's adapter (the score head is new and trained in full), so the
    reward model reads the parent's features. They are not merged into the weights: see `continue_adapter`.
    """
    extra = {"num_labels": 1, "pad_token_id": tokenizer.pad_token_id}
    # Scores must be reproducible on reload, so the CPU inference repacking stays off here (for_training=True).
    model = _load_pretrained(AutoModelForSequenceClassification, path, model_config, dtype, True, extra)
    # Under 4-bit loading the new head is made in the checkpoint's dtype (bf16 for SmolLM2), not in `dtype`: in fp32
    # (precision auto on an AVX2-only CPU) the first score then failed with "float != BFloat16".
    if hasattr(model, "score"):  # the head's name in Llama, Qwen, Gemma, Mistral ... classifiers
        model.score.to(dtype)
    return continue_adapter(model, parent_adapter, task_type="SEQ_CLS") if parent_adapter else model


def load_policy(path: str, model_config: ModelConfig, parent_adapter: Path | None, dtype: torch.dtype) -> Any:
    """The causal LM an rlhf stage trains: the base with the parent's adapter loaded trainable, or the bare base."""
    model = load_causal_lm(path, model_config, dtype, for_training=True)
    return continue_adapter(model, parent_adapter, task_type="CAUSAL_LM") if parent_adapter else model


def continue_adapter(model: Any, adapter_dir: Path, task_type: str) -> Any:
    """Load a trained stage's LoRA adapter as the trainable adapter of a new stage.

    Not merged: merging LoRA into 4-bit weights re-rounds them to NF4 and erases most of what the adapter learned
    (measured on the demo sft stage: held-out loss 2.65 with the adapter, 4.13 merged into NF4, 4.17 without it).
    A QLoRA adapter is trained against its quantized base and stays beside it. Trainers that need a reference (DPO,
    KTO, GRPO, RLOO) keep a frozen copy of this adapter ("ref"): the parent policy, adapter-sized, no model copy.
    """
    from peft import PeftConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_config = PeftConfig.from_pretrained(str(adapter_dir))
    adapter_config.task_type = task_type
    adapter_config.inference_mode = False
    if task_type == "SEQ_CLS":
        adapter_config.modules_to_save = ["score"]  # the new head is trained in full and saved with the adapter
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    if task_type == "SEQ_CLS":  # the parent, a causal LM, has no score head: keep the freshly initialised one
        for name, parameter in model.score.named_parameters():
            weights.setdefault(f"base_model.model.score.{name}", parameter.detach().clone())
    # A fresh adapter of the parent's shape, then the parent's weights.
    peft_model = get_peft_model(model, adapter_config)
    result = set_peft_model_state_dict(peft_model, weights)
    if result.unexpected_keys:
        raise AlignpipeError(f"The adapter in {adapter_dir} does not fit this model: {result.unexpected_keys[:3]} ...")
    return peft_model


def copy_adapter(model: Any, source: str, target: str, trainable: bool) -> None:
    """A new LoRA adapter `target` of a PeftModel with the configuration and weights of its adapter `source`."""
    import copy

    config = copy.deepcopy(model.peft_config[source])
    config.inference_mode = not trainable
    model.add_adapter(target, config)
    for name, parameter in model.named_parameters():
        if f".{source}." in name:
            duplicate = model.get_parameter(name.replace(f".{source}.", f".{target}."))
            duplicate.data.copy_(parameter.data)
            duplicate.requires_grad_(trainable)


def _load_pretrained(
    auto_class: Any, path: str, model_config: ModelConfig, dtype: torch.dtype, for_training: bool, extra: dict
) -> Any:
    quantization = quantization_config(model_config.quantization)
    kwargs: dict[str, Any] = {"dtype": dtype, **extra}
    if model_config.attn_implementation:
        kwargs["attn_implementation"] = model_config.attn_implementation
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        if not shards_parameters():  # FSDP / ZeRO-3 place the shards themselves
            # One process per GPU under --nproc: each loads its copy on its own device.
            kwargs["device_map"] = {"": local_rank()} if torch.cuda.is_available() else {"": "cpu"}
    try:
        model = auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as error:
        raise AlignpipeError(_load_failure(path, error)) from None
    if for_training and model_config.quantization == "4bit":
        keep_4bit_weights_differentiable(model)
    return model


def keep_4bit_weights_differentiable(model: Any) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for fast CPU inference when a model in training is evaluated.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 repacks a Linear4bit's weight on the first forward in eval mode and
    never packs it back; the packed kernel has no backward, so every later training step silently loses the
    gradient through the base layers (found here: held-out loss rose after an eval before training).
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def lora_config(lora: LoraConfig, task_type: str) -> Any:
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
    )


def load_stage_for_inference(
    stage_dir: Path, quantization: str | None = None, dequantized: bool = False
) -> tuple[Any, PreTrainedTokenizerBase]:
    """A trained stage's model (base + adapter) and the tokenizer saved with it, ready for generation.

    dequantized=True: the base quantized as in training, then dequantized to float32 (transformers' `dequantize`),
    so that the adapter sits on full-precision weights equal to those it was trained against (for merging).
    """
    from peft import PeftModel

    from alignpipe.config import Recipe
    from alignpipe.runs import read_manifest

    manifest = read_manifest(stage_dir)
    if manifest.get("stage") == "rm":
        raise AlignpipeError(f"{stage_dir} is a reward model: it scores, it does not generate (alignpipe score reward).")
    recipe = Recipe.model_validate(manifest["recipe"])
    model_config = recipe.model.model_copy(update={"quantization": quantization or recipe.model.quantization})
    adapter_dir = stage_dir / "adapter"
    if not (adapter_dir / "adapter_config.json").is_file():
        raise AlignpipeError(f"{stage_dir} has no trained adapter (adapter/adapter_config.json); is the stage finished?")
    tokenizer = load_tokenizer(str(adapter_dir))
    # Every stage's adapter holds the whole policy on the base: an rlhf adapter continued its parent's.
    base = load_causal_lm(resolve_base(recipe.model.base), model_config, dtype=torch.float32, for_training=False)
    if dequantized and model_config.quantization != "none":
        base = base.dequantize(dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    return model, tokenizer


def load_plain_causal_lm(reference: str) -> tuple[Any, PreTrainedTokenizerBase]:
    """Any causal LM by path or hub id ('embedded' = the embedded model), full precision, for scoring."""
    path = resolve_base(reference)
    tokenizer = load_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise AlignpipeError(_load_failure(path, error)) from None
    model.eval()
    return model, tokenizer


def generate_reply(
    model: Any, tokenizer: PreTrainedTokenizerBase, prompt: str, max_new_tokens: int, temperature: float
) -> str:
    messages = [{"role": "user", "content": prompt}]
    input_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    input_ids = {key: value.to(model.device) for key, value in input_ids.items()}
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    with torch.no_grad():
        output = model.generate(
            **input_ids, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
        )
    new_tokens = output[0, input_ids["input_ids"].shape[1] :]
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def load_for_generation(model_dir: Path) -> tuple[Any, PreTrainedTokenizerBase]:
    """A trained stage (base + adapter) or a merged export (`alignpipe export`), and its tokenizer."""
    if not (model_dir / "manifest.json").is_file() and (model_dir / "config.json").is_file():
        return load_plain_causal_lm(str(model_dir))
    return load_stage_for_inference(model_dir)


def _load_failure(path: str, error: Exception) -> str:
    hint = "" if Path(path).exists() else " It is not a local path; a hub id needs network access to the hub."
    return f"Could not load model or tokenizer from {path!r}: {str(error).splitlines()[0]}.{hint}"
