"""Export a trained stage as a merged Hugging Face model (and optionally GGUF) that provably matches the adapter model.

    alignpipe export runs/demo/rlhf --out exported/demo-rlhf                            # merged HF model
    alignpipe export runs/demo/rlhf --out exported/demo-rlhf-gguf --format gguf --quant q8_0

The stage's adapter is merged into a full-precision copy of the base, never into 4-bit weights (re-rounding to NF4
erases the adapter, see models.continue_adapter). For a 4-bit or 8-bit run that copy is the quantized base
dequantized: the weights the adapter was trained against, not the original ones. The merged model is saved with the
tokenizer and chat template and read back from disk; its logits on fixed prompts must match the adapter model's (the
same full-precision weights with the adapter beside them). A GGUF file, written with the `gguf` package, must match
the merged model once transformers reads it back. A mismatch fails the export and leaves nothing at --out:
everything is written into a staging folder that becomes --out only when every check passed. The model card
(README.md) records the numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from alignpipe import models, runs, stage_lock
from alignpipe.embedded import pass_terms_on
from alignpipe.errors import AlignpipeError

# Prompts rendered as `generate` renders them (EN, JA, a follow-up turn); logits are compared at every position.
PARITY_CONVERSATIONS = [
    [{"role": "user", "content": "How do I reset my kettle?"}],
    [{"role": "user", "content": "保証期間は何年ですか？"}],
    [{"role": "system", "content": "You are a support assistant."},
     {"role": "user", "content": "Why does it beep three times?"},
     {"role": "assistant", "content": "It is too hot. Let it cool down for ten minutes."},
     {"role": "user", "content": "And then?"}],
]

# Allowed max |logit difference| relative to the largest |logit| of the reference, 2x to 30x the values
# measured (README.md, "Checking templates and exporting"). The merged model computes (W + B A) x instead of
# W x + B (A x): float32 rounding only (measured 3e-7 tiny, 3e-6 SmolLM2). GGUF f16 rounds every weight matrix to 11
# significant bits (measured 3e-4, 1.4e-3); q8_0 to 8-bit blocks of 32 with an f16 scale each (7e-3, 3.3e-2).
MERGE_TOLERANCE = 1e-4
GGUF_TOLERANCE = {"f16": 0.01, "q8_0": 0.06}
GGUF_QUANTS = tuple(GGUF_TOLERANCE)


@dataclass
class LogitDifference:
    key: str  # merged_vs_adapter | merged_vs_quantized_adapter | gguf_vs_merged
    name: str
    max_abs: float  # max |logit difference| over every position and vocabulary entry
    scale: float  # max |logit| of the reference
    top1_agreement: float  # share of positions where both models' most likely next token is the same
    tolerance: float | None  # on max_abs / scale; None: measured and reported only

    @property
    def relative(self) -> float:
        return self.max_abs / self.scale

    @property
    def passed(self) -> bool:
        return self.tolerance is None or self.relative <= self.tolerance

    def line(self) -> str:
        limit = "measured only" if self.tolerance is None else f"tolerance {self.tolerance:g}"
        verdict = "" if self.tolerance is None else ("OK  " if self.passed else "FAIL")
        return (f"{verdict:4} {self.name}: max |Δlogit| {self.max_abs:.3g} = {self.relative:.3g} of the logit scale "
                f"{self.scale:.3g} ({limit}); same top-1 token at {self.top1_agreement:.1%} of positions")


def parity_inputs(tokenizer: Any) -> list[torch.Tensor]:
    return [tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)["input_ids"] for conversation in PARITY_CONVERSATIONS]


def logits_of(model: Any, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    with torch.no_grad():
        return [model(input_ids=ids.to(model.device)).logits[0].float().cpu() for ids in inputs]


def compare_logits(key: str, name: str, reference: list[torch.Tensor], other: list[torch.Tensor],
                   tolerance: float | None) -> LogitDifference:
    ref, new = torch.cat(reference), torch.cat(other)
    return LogitDifference(
        key=key,
        name=name,
        max_abs=(ref - new).abs().max().item(),
        scale=ref.abs().max().item(),
        top1_agreement=(ref.argmax(-1) == new.argmax(-1)).float().mean().item(),
        tolerance=tolerance,
    )


def export_stage(stage_dir: Path, out_dir: Path, fmt: str = "hf", quant: str = "f16",
                 force: bool = False) -> dict[str, Any]:
    """Merge, verify, optionally write GGUF and verify it, write the model card; return the export record."""
    from transformers import AutoModelForCausalLM

    if out_dir.exists() and any(out_dir.iterdir()):
        raise AlignpipeError(f"Export directory {out_dir} exists and is not empty; choose another --out.")
    manifest = runs.read_manifest(stage_dir)
    if manifest.get("status") not in runs.FINISHED_STATUSES:
        raise AlignpipeError(f"{stage_dir} has not finished training (status {manifest.get('status')}); nothing to export.")
    refuse_unpromoted(stage_dir, manifest, force)
    if fmt == "gguf":
        refuse_unsupported_gguf(stage_dir, manifest)
    if quant not in GGUF_QUANTS:
        raise AlignpipeError(f"--quant {quant} is not offered; choose one of {', '.join(GGUF_QUANTS)}.")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_interrupted_exports(out_dir.parent)
    # The owner in the name lets the next export tell an interrupted staging folder from a live one.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{STAGING_MARK}{os.getpid()}@{socket.gethostname()}-",
                                    dir=out_dir.parent))
    try:
        record = _export_into(stage_dir, manifest, staging, out_dir.name, fmt, quant, AutoModelForCausalLM)
        runs.normalize_modes(staging)  # mkdtemp's 0700 and the weight shards' 0600 would carry over to the export
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


STAGING_MARK = ".exporting-"
STAGING_OWNER = re.compile(re.escape(STAGING_MARK) + r"(\d+)@(.+)-[^-]+$")


def remove_interrupted_exports(parent: Path) -> list[Path]:
    """Delete the staging folders that killed exports left in `parent` (their process is gone), naming each; a
    staging folder of a live export, or of another host, is left alone and named too."""
    removed = []
    for folder in sorted(parent.glob(f".*{STAGING_MARK}*")):
        owner = STAGING_OWNER.search(folder.name)
        holder = {"pid": int(owner.group(1)), "host": owner.group(2)} if owner else {}
        alive = stage_lock.process_alive(holder)
        if not folder.is_dir() or alive is not False:
            why = "its export is running" if alive else ("on another host" if holder else "written by an older alignpipe")
            print(f"note: left {folder} alone, an export's staging folder ({why}); delete it once no export into "
                  f"{parent} runs.", flush=True)
            continue
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        print(f"Removed {folder}: an interrupted export's staging folder ({size / 2**20:.0f} MiB; its process "
              f"{holder['pid']} is gone).", flush=True)
        removed.append(folder)
    return removed


def _export_into(stage_dir: Path, manifest: dict[str, Any], staging: Path, name: str, fmt: str, quant: str,
                 auto_class: Any) -> dict[str, Any]:
    record: dict[str, Any] = {"source_stage": str(stage_dir.resolve()), "format": fmt, "checks": [], "seconds": {}}
    started = time.perf_counter()
    # The adapter on full-precision weights equal to those it was trained against (a 4-bit or 8-bit base is
    # dequantized, not swapped for the original weights): what merging must reproduce exactly.
    adapter_model, tokenizer = models.load_stage_for_inference(stage_dir, dequantized=True)
    inputs = parity_inputs(tokenizer)
    adapter_logits = logits_of(adapter_model, inputs)
    merged = adapter_model.merge_and_unload()
    merged.generation_config.eos_token_id = models.stop_token_ids(merged, tokenizer)
    merged.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    del merged, adapter_model
    reloaded = auto_class.from_pretrained(staging, dtype=torch.float32)
    reloaded.eval()
    merged_logits = logits_of(reloaded, inputs)
    record["checks"].append(check(compare_logits("merged_vs_adapter", "merged model (from disk) vs adapter model", adapter_logits,
                                                 merged_logits, MERGE_TOLERANCE)))
    record["seconds"]["merge"] = round(time.perf_counter() - started, 1)

    quantization = manifest["recipe"]["model"]["quantization"]
    if quantization != "none":
        # The model that was trained and gated computes with quantized weights in bf16; the merged model holds the
        # same weights dequantized, in float32. Measured and reported, not a failure.
        trained, _ = models.load_stage_for_inference(stage_dir)
        record["checks"].append(check(compare_logits(
            "merged_vs_quantized_adapter", f"merged model vs the adapter on the {quantization} base it was trained on", logits_of(trained, inputs),
            merged_logits, None)))
        del trained

    if fmt == "gguf":
        started = time.perf_counter()
        from alignpipe.gguf_export import write_llama_gguf

        gguf_name = f"{staging_name(manifest)}-{quant}.gguf"
        write_llama_gguf(reloaded, tokenizer, staging, staging / gguf_name, quant)
        record["gguf_file"] = gguf_name
        record["seconds"]["gguf_write"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        record["checks"].append(check(verify_gguf(staging, gguf_name, tokenizer, inputs, merged_logits, quant,
                                                  auto_class)))
        record["seconds"]["gguf_verify"] = round(time.perf_counter() - started, 1)

    record["terms_files"] = pass_terms_on(manifest["recipe"]["model"]["base"], staging)  # Gemma's travel with it
    (staging / "alignpipe_export.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n",
                                                   encoding="utf-8")
    from alignpipe.model_card import write_model_card

    write_model_card(staging, stage_dir, record, name)
    return record


def check(difference: LogitDifference) -> dict[str, Any]:
    print(difference.line(), flush=True)
    if not difference.passed:
        raise AlignpipeError(f"Export parity check failed: {difference.name}: max |Δlogit| is {difference.relative:.3g} "
                             f"of the logit scale, above the tolerance {difference.tolerance:g}. Nothing was exported.")
    return {**asdict(difference), "relative": difference.relative}


def verify_gguf(folder: Path, gguf_name: str, tokenizer: Any, inputs: list[torch.Tensor],
                merged_logits: list[torch.Tensor], quant: str, auto_class: Any) -> LogitDifference:
    """Read the GGUF back the way transformers users do, from a folder holding nothing else (so that nothing comes
    from the merged model's files), and check its tokenizer, chat template and logits against the merged model."""
    import os

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(dir=folder.parent) as alone:
        try:
            os.link(folder / gguf_name, Path(alone) / gguf_name)
        except OSError:
            shutil.copyfile(folder / gguf_name, Path(alone) / gguf_name)
        gguf_tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=gguf_name)
        gguf_model = auto_class.from_pretrained(alone, gguf_file=gguf_name, dtype=torch.float32)
    gguf_model.eval()
    if gguf_tokenizer.eos_token != tokenizer.eos_token or gguf_tokenizer.bos_token != tokenizer.bos_token:
        raise AlignpipeError(f"The GGUF file's BOS/EOS tokens are {gguf_tokenizer.bos_token!r}/{gguf_tokenizer.eos_token!r}, "
                             f"not {tokenizer.bos_token!r}/{tokenizer.eos_token!r}.")
    for conversation, ids in zip(PARITY_CONVERSATIONS, inputs):
        rendered = gguf_tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_dict=True)
        if list(rendered["input_ids"]) != ids[0].tolist():
            raise AlignpipeError(f"The GGUF file's tokenizer or chat template renders {conversation[-1]['content']!r} "
                                 "differently from the model's own; the GGUF would not see the prompts it was trained on.")
    return compare_logits("gguf_vs_merged", f"GGUF {quant} (read back by transformers) vs merged model", merged_logits,
                          logits_of(gguf_model, inputs), GGUF_TOLERANCE[quant])


def refuse_unpromoted(stage_dir: Path, manifest: dict[str, Any], force: bool) -> None:
    """Nothing leaves a stage the gate did not promote, unless --force (the model card then says so)."""
    if manifest.get("status") == "promoted":
        return
    gate = manifest.get("gate") or {}
    why = (f"was blocked by the safety gate (report: {gate.get('report')})" if manifest.get("status") == "blocked"
           else f"was never promoted by the safety gate (status {manifest.get('status')}, verdict {gate.get('verdict')})")
    if not force:
        raise AlignpipeError(f"{stage_dir} {why}; it is not exported. Read the report, or pass --force to export it "
                             "anyway (its model card then states the verdict and the failed checks).")
    print(f"WARNING: --force: exporting {stage_dir}, which {why}.", flush=True)


def refuse_unsupported_gguf(stage_dir: Path, manifest: dict[str, Any]) -> None:
    """GGUF export is written for Llama-architecture models with a byte-level BPE tokenizer; others are refused."""
    from transformers import AutoConfig

    base = models.resolve_base(manifest["recipe"]["model"]["base"])
    config = AutoConfig.from_pretrained(base)
    rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if config.model_type != "llama":
        raise AlignpipeError(f"GGUF export is not supported yet for {config.model_type} models (only Llama "
                             "architecture). Export the merged model (without --format gguf) and convert it with "
                             "llama.cpp's convert_hf_to_gguf.py.")
    if rope_type != "default" or getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise AlignpipeError(f"GGUF export is not supported yet for Llama models with rope_type={rope_type} or biases; "
                             "export the merged model and convert it with llama.cpp's convert_hf_to_gguf.py.")


def staging_name(manifest: dict[str, Any]) -> str:
    run_name = manifest["recipe"]["run"]["name"]
    return f"{run_name}-{manifest['stage']}"
