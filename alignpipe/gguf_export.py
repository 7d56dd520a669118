"""Write a merged Llama-architecture model as one GGUF file (f16 or q8_0) with the `gguf` package.

Follows llama.cpp's convert_hf_to_gguf.py for Llama: the same metadata keys, tensor names (gguf's tensor map),
the q/k projection permutation (llama.cpp's rotary embedding pairs adjacent dimensions, Hugging Face's pairs the
two halves; transformers undoes it on load), 1-D tensors in f32, and a gpt2-style BPE tokenizer (tokens, token
types, merges, special ids, chat template) so that llama.cpp, Ollama and transformers rebuild the same prompts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignpipe.errors import AlignpipeError


def write_llama_gguf(model: Any, tokenizer: Any, tokenizer_dir: Path, path: Path, quant: str) -> None:
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(path.stem)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    file_type = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant]
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_tokenizer(writer, tokenizer, tokenizer_dir, config.vocab_size)
    add_tensors(writer, model, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()


def add_tokenizer(writer: Any, tokenizer: Any, tokenizer_dir: Path, vocab_size: int) -> None:
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    if backend["model"]["type"] != "BPE" or (backend.get("decoder") or {}).get("type") != "ByteLevel":
        raise AlignpipeError("GGUF export is not supported yet for this tokenizer: only byte-level BPE (gpt2-style, "
                             "as Llama 3 and SmolLM use) is written.")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(backend.get("pre_tokenizer") or {}))
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for token_id in range(vocab_size):
        if token_id >= len(tokenizer):  # embedding rows beyond the tokenizer (padded vocabularies)
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(tokenizer.convert_ids_to_tokens(token_id))
        if token_id in added:
            types.append(gguf.TokenType.CONTROL if added[token_id].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/unk/pad ids and the chat template, read from the saved tokenizer files as llama.cpp does.
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True, n_vocab=vocab_size)
    special.add_to_gguf(writer, quiet=True)
    if tokenizer.pad_token_id is not None and "pad" not in special.special_token_ids:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    if "bos" not in special.add_special_token:
        # Our templates write every special token themselves; a reader adding a BOS would double it.
        writer.add_add_bos_token(False)
    if special.chat_template is None:
        writer.add_chat_template(tokenizer.chat_template)


def pre_tokenizer_name(pre_tokenizer: dict[str, Any]) -> str:
    """llama.cpp's name for how text is split before BPE; transformers rebuilds the split from it."""
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    if pre_tokenizer.get("type") == "ByteLevel" and pre_tokenizer.get("use_regex", True):
        return "gpt-2"  # GPT-2's own split, the default of a byte-level tokenizer
    steps = pre_tokenizer.get("pretokenizers", [])
    patterns = [step.get("pattern", {}).get("Regex") for step in steps if step.get("type") == "Split"]
    for name, regex in GGUF_PRE_TOKENIZER_SPLITS.items():
        if patterns == [regex]:
            return name
    raise AlignpipeError(f"GGUF export is not supported yet for this tokenizer's pre-tokenizer ({pre_tokenizer}).")


def add_tensors(writer: Any, model: Any, quant: str) -> None:
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # a tied output layer is the embedding; readers tie it when output.weight is absent
        module_name, suffix = hf_name.rsplit(".", 1)
        gguf_name = names.get_name(module_name)
        if gguf_name is None:
            raise AlignpipeError(f"GGUF export: no GGUF name for the tensor {hf_name}; not supported yet.")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = permute_for_llama_cpp(data, config.num_attention_heads, config.num_attention_heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = permute_for_llama_cpp(data, config.num_attention_heads, config.num_key_value_heads)
        qtype = tensor_type(data, quant)
        writer.add_tensor(f"{gguf_name}.{suffix}", gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def tensor_type(data: np.ndarray, quant: str) -> Any:
    """llama.cpp's rule: 1-D tensors (norms) stay f32; q8_0 needs rows in whole blocks of 32, else f16."""
    from gguf import GGMLQuantizationType

    if data.ndim == 1:
        return GGMLQuantizationType.F32
    if quant == "q8_0" and data.shape[-1] % 32 == 0:
        return GGMLQuantizationType.Q8_0
    return GGMLQuantizationType.F16


def permute_for_llama_cpp(weights: np.ndarray, n_head: int, n_head_kv: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute: interleave each head's two rotary halves."""
    heads = n_head_kv if n_head_kv != n_head else n_head
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))
