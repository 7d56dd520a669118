"""The model card (README.md) of an export: base model, the stages that made it with their gate verdicts and key
metrics (from their manifests), data sources, the export's parity numbers, licence notes and intended use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignpipe import runs
from alignpipe.embedded import embedded_model, is_embedded

# The metrics worth a reader's time, per stage kind, in manifest names.
KEY_METRICS = {
    "sft": ("eval_loss_base", "eval_loss", "eval_perplexity", "train_loss", "global_step"),
    "rm": ("eval_accuracy_base", "eval_accuracy", "eval_margin_mean", "global_step"),
    "rlhf": ("eval_reward_before", "eval_reward_after", "eval_win_rate", "eval_kl_to_reference", "global_step"),
}


def lineage(stage_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The stage and every stage it builds on (parents, and the reward model of an rlhf stage), base first."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    pending: list[Path] = [stage_dir]
    while pending:
        current = pending.pop()
        if any(current == seen for seen, _ in chain):
            continue
        manifest = runs.read_manifest(current)
        chain.append((current, manifest))
        pending += [Path(p) for p in (manifest.get("parent"), manifest.get("reward_model")) if p]
    return chain[::-1]


def stage_rows(chain: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    rows = ["| stage | directory | status | gate | key metrics |", "|---|---|---|---|---|"]
    for stage_dir, manifest in chain:
        recipe = manifest.get("recipe", {})
        kind = manifest.get("stage", "?")
        algorithm = f" ({recipe.get('rlhf', {}).get('algorithm')})" if kind == "rlhf" else ""
        metrics = manifest.get("metrics", {})
        shown = ", ".join(f"{name} {format_number(metrics[name])}" for name in KEY_METRICS.get(kind, ()) if name in metrics)
        gate = manifest.get("gate") or {}
        verdict = gate.get("verdict", "not gated")
        forced = " (forced)" if manifest.get("forced") else ""
        rows.append(f"| {kind}{algorithm} | `{stage_dir}` | {manifest.get('status')}{forced} | {verdict} | {shown} |")
    return rows


def format_number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def data_rows(chain: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    rows = ["| stage | role | source | layout | examples | sha256 (or datasets fingerprint) |", "|---|---|---|---|---|---|"]
    for _, manifest in chain:
        for role, entry in (manifest.get("data") or {}).items():
            source = entry.get("source") or entry.get("path")
            if entry.get("split"):
                source += f" ({entry['split']})"
            if entry.get("held_out_from"):
                source += f" (held out of {entry['held_out_from']})"
            digest = entry.get("sha256") or entry.get("datasets_fingerprint") or ""
            rows.append(f"| {manifest.get('stage')} | {role} | `{source}` | {entry.get('layout', '')} | "
                        f"{entry.get('examples', '')} | {'`' + digest[:16] + '…`' if digest else ''} |")
    return rows


def gate_standing(stage_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """What the safety gate said of the exported stage, plainly, and every exception behind it."""
    import json

    gate = manifest.get("gate") or {}
    lines = ["## Safety gate", ""]
    if manifest.get("status") == "promoted":
        lines.append(f"The exported stage was promoted by its gate (verdict {gate.get('verdict')}).")
    else:
        failed = []
        report = Path(gate["report"]) if gate.get("report") else None
        if report is not None and report.is_file():
            checks = json.loads(report.read_text(encoding="utf-8")).get("checks", [])
            failed = [f"{c['name']} ({c['value']:.3f}, baseline {format_number(c['baseline_value'])})"
                      for c in checks if c["verdict"] == "block"]
        lines.append(f"**Exported with --force: the gate did not promote this stage** (status {manifest.get('status')}, "
                     f"verdict {gate.get('verdict')}" + (f"; blocked by {', '.join(failed)}" if failed else "") + ").")
    if gate.get("overridden"):
        lines.append(f"Its verdict came from a re-gate with settings other than its recipe's: {gate.get('settings_changed')}.")
    for entry in manifest.get("lineage_exceptions", []):
        lines.append(f"- behind it: `{entry['stage']}` {entry['exception']} (verdict {entry.get('verdict')})")
    return lines + [""]


def write_model_card(out_dir: Path, stage_dir: Path, record: dict[str, Any], name: str) -> Path:
    """README.md in out_dir: the Hub's metadata (huggingface_hub.ModelCardData: base_model, license, language,
    tags, the gate's verdicts) as YAML front matter, then the card for people. `name` is the folder name users will
    see (out_dir may be a staging folder)."""
    from huggingface_hub import ModelCard

    chain = lineage(stage_dir)
    card = ModelCard(f"---\n{card_metadata(chain).to_yaml()}\n---\n\n" + card_text(chain, stage_dir, record, name))
    path = out_dir / "README.md"
    card.save(path)
    return path


def card_metadata(chain: list[tuple[Path, dict[str, Any]]]) -> Any:
    """What the Hub reads: the base model (linked when it is a Hub id), its licence where known, the languages the
    gate checks, and every stage's status and verdict."""
    from huggingface_hub import ModelCardData

    manifest = chain[-1][1]
    base = manifest.get("base_model", "?")
    local = Path(base).exists() or base.startswith((".", "/"))
    return ModelCardData(
        base_model=embedded_model(base).hub_id if is_embedded(base) else (None if local else base),
        license=embedded_model(base).license_id if is_embedded(base) else None,
        language=["en", "ja"],
        library_name="transformers",
        tags=["alignpipe", "lora", *sorted({m.get("stage", "?") for _, m in chain})],
        alignpipe_gate=[{"stage": m.get("stage"), "directory": str(d), "status": m.get("status"),
                         "verdict": (m.get("gate") or {}).get("verdict"), "forced": bool(m.get("forced")),
                         "overridden": bool((m.get("gate") or {}).get("overridden"))} for d, m in chain],
    )


def licence_note(base: str) -> str:
    if not is_embedded(base):
        return "; check it before redistribution."
    model = embedded_model(base)
    where = f": `{model.terms_file}` in this folder" if model.terms_file else ""
    return f" ({model.license_name}; the terms must be passed on with the model{where})."


def card_text(chain: list[tuple[Path, dict[str, Any]]], stage_dir: Path, record: dict[str, Any], name: str) -> str:
    manifest = chain[-1][1]
    base = manifest.get("base_model", "?")
    base_text = embedded_model(base).title if is_embedded(base) else f"`{base}`"
    quantization = manifest["recipe"]["model"]["quantization"]
    demo_data = any("data/demo/" in (entry.get("source") or entry.get("path") or "")
                    for _, m in chain for entry in (m.get("data") or {}).values())
    checks = [f"- {c['name']}: max |Δlogit| {c['max_abs']:.3g} ({c['relative']:.3g} of the logit scale "
              f"{c['scale']:.3g}{'' if c['tolerance'] is None else ', tolerance %g' % c['tolerance']}); "
              f"same top-1 token at {c['top1_agreement']:.1%} of positions" for c in record["checks"]]
    gguf_file = record.get("gguf_file")
    usage = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
             f'model = AutoModelForCausalLM.from_pretrained("{name}")',
             f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```",
             f"or `alignpipe generate {name} \"your question\"`."]
    if gguf_file:
        usage += ["", f"GGUF (llama.cpp, Ollama): `{gguf_file}` carries the chat template and special tokens: "
                  f"`llama-cli -m {gguf_file} -cnv`, or an Ollama Modelfile `FROM ./{gguf_file}`."]
    lines = [
        f"# {manifest['recipe']['run']['name']}: {manifest['stage']} model",
        "",
        f"Exported by alignpipe from `{stage_dir}` ({record['format']}). Base model: {base_text}.",
        "",
        "## How it was made",
        "",
        *stage_rows(chain),
        "",
        f"Every stage trained a LoRA adapter on the {quantization} base; each stage continued its parent's adapter. "
        "The export merges the final adapter into a full-precision copy of the base weights.",
        "",
        *gate_standing(stage_dir, manifest),
        "## Export checks",
        "",
        "Logits on fixed prompts (EN, JA, multi-turn), compared at every position:",
        "",
        *checks,
        "",
        *([f"Trained on a {quantization} base and merged into that base dequantized to full precision (merging into "
           "quantized weights would round the adapter away). The gate checked the model computing with quantized "
           "weights in bf16; the second line above measures how far the merged model is from it.", ""]
          if quantization != "none" else []),
        "## Data",
        "",
        *data_rows(chain),
        "",
        "## Licence notes",
        "",
        "- The weights are a derivative of the base model and follow its licence" + licence_note(base),
        "- " + ("The demo data (`data/demo/`) is fictional and CC0." if demo_data
                else "Training data licences are those of the data sources listed above; check them."),
        "",
        "## Intended use",
        "",
        ("A demonstration of staged alignment: a support assistant for a fictional kettle (English and Japanese). "
         "Not for production use or factual questions outside that scope." if demo_data else
         "As defined by whoever trained it. The safety gate's checks (toxicity, refusal balance, general-text "
         "perplexity) are screening tests on small shipped sets, not a safety evaluation for deployment."),
        "",
        "## Use",
        "",
        *usage,
        "",
    ]
    return "\n".join(lines)
