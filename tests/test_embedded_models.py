"""The embedded models' resolution, hash check and bad-state messages, on a fake package layout in a temp dir (fast:
nothing is downloaded or converted; the real Gemma conversion runs in tests/test_embedded.py, slow)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from alignpipe import cli, embedded
from alignpipe.embedded import GEMMA_3_270M, embedded_model, embedded_model_dir, is_embedded
from alignpipe.errors import AlignpipeError

REPO = Path(__file__).parents[1]
CHUNKS = [b"GGUF-part-0|", b"part-1|", b"part-2|", b"part-3"]
PACKAGES = ("fakegemma_gguf", "fakegemma_part1", "fakegemma_part2", "fakegemma_part3", "fakegemma_part4")


def fake_packages(root: Path, chunks: list[bytes] = CHUNKS, skip: tuple[str, ...] = ()) -> None:
    """The layout of the Gemma wheels: an assembler package with the terms in data/, one chunk per part package."""
    for index, package in enumerate(PACKAGES):
        if package in skip:
            continue
        (root / package / "data").mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        if index == 0:
            (root / package / "data" / "GEMMA_TERMS.html").write_text("<html>the terms</html>")
            (root / package / "data" / "NOTICE.md").write_text("notice")
        else:
            (root / package / "data" / f"fake.gguf.part{index - 1:02d}").write_bytes(chunks[index - 1])


@pytest.fixture
def fake_gemma(tmp_path, monkeypatch):
    """`embedded:fake-gemma`: Gemma's record with fake package names and the fake chunks' hash; cache in tmp."""
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("ALIGNPIPE_CACHE", str(tmp_path / "cache"))
    model = dataclasses.replace(GEMMA_3_270M, name="fake-gemma", packages=PACKAGES, gguf_file="fake.gguf",
                                cache_subdir="fake-gemma", sha256=hashlib.sha256(b"".join(CHUNKS)).hexdigest())
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, model.name, model)
    return model


def fake_conversion(model, gguf_path: Path, out_dir: Path) -> None:
    """Stands in for transformers' GGUF reader: records what it was given."""
    (out_dir / "config.json").write_text(json.dumps({"converted_from": gguf_path.read_bytes().decode()}))


def test_names_resolve_to_their_models():
    assert embedded_model("embedded").name == "smollm2-135m-instruct"
    assert embedded_model("embedded:gemma-3-270m") is GEMMA_3_270M
    assert is_embedded("embedded:gemma-3-270m") and is_embedded("embedded") and not is_embedded("./embedded")
    with pytest.raises(AlignpipeError, match="Unknown embedded model 'embedded:gemma-9'.*embedded:gemma-3-270m"):
        embedded_model("embedded:gemma-9")


def test_the_parts_are_joined_in_order_hash_checked_converted_once_and_the_terms_shown_once(
        tmp_path, fake_gemma, monkeypatch, capsys):
    fake_packages(tmp_path / "site")
    monkeypatch.setattr(embedded, "_convert_gguf", fake_conversion)
    path = embedded_model_dir("embedded:fake-gemma")
    assert json.loads((path / "config.json").read_text())["converted_from"] == b"".join(CHUNKS).decode()
    assert (path / "GEMMA_TERMS.html").read_text() == "<html>the terms</html>"
    assert not (path / "fake.gguf").exists()  # the joined file is not kept beside the converted weights
    first = capsys.readouterr().out
    assert "Gemma Terms of Use" in first and str(path / "GEMMA_TERMS.html") in first
    monkeypatch.setattr(embedded, "_convert_gguf", lambda *args: pytest.fail("converted twice"))
    assert embedded_model_dir("embedded:fake-gemma") == path
    assert "Gemma Terms" not in capsys.readouterr().out


def test_a_damaged_part_fails_the_hash_and_leaves_no_cache(tmp_path, fake_gemma, monkeypatch):
    fake_packages(tmp_path / "site", chunks=[CHUNKS[0], b"tampered|", *CHUNKS[2:]])
    monkeypatch.setattr(embedded, "_convert_gguf", lambda *args: pytest.fail("converted a damaged file"))
    with pytest.raises(AlignpipeError, match="sha256 .* not the expected .*damaged or replaced.*make setup-ja"):
        embedded_model_dir("embedded:fake-gemma")
    assert list((tmp_path / "cache").iterdir()) == []  # no half-written directory, no left-over GGUF


def test_a_missing_part_package_or_chunk_is_named(tmp_path, fake_gemma):
    fake_packages(tmp_path / "site", skip=("fakegemma_part3",))
    with pytest.raises(AlignpipeError, match=r"is not installed \(missing: fakegemma_part3\).*make setup-ja"):
        embedded_model_dir("embedded:fake-gemma")
    (tmp_path / "site" / "fakegemma_part3" / "data").mkdir(parents=True)  # the package, but not its chunk
    (tmp_path / "site" / "fakegemma_part3" / "__init__.py").write_text("")
    with pytest.raises(AlignpipeError, match="A part of fake.gguf is missing from .*fakegemma_part3/data"):
        embedded_model_dir("embedded:fake-gemma")


def test_a_stage_on_an_uninstalled_gemma_exits_2_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ALIGNPIPE_CACHE", str(tmp_path / "cache"))
    absent = dataclasses.replace(GEMMA_3_270M, packages=("no_such_gemma_package",))
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, GEMMA_3_270M.name, absent)
    monkeypatch.chdir(REPO)
    assert cli.main(["sft", "recipes/demo-ja.yaml", f"run.output_root={tmp_path / 'runs'}"]) == 2
    error = capsys.readouterr().err
    assert "not installed (missing: no_such_gemma_package)" in error and "make setup-ja" in error
    assert "Traceback" not in error


def test_an_unknown_embedded_name_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code = cli.main(["sft", "recipes/demo.yaml", "model.base=embedded:gemma-9", "--dry-run",
                     f"run.output_root={tmp_path}"])
    assert code == 2 and "Unknown embedded model 'embedded:gemma-9'" in capsys.readouterr().err


def test_manifests_and_model_cards_name_gemmas_terms(tmp_path, fake_gemma, monkeypatch):
    from alignpipe.model_card import card_metadata
    from alignpipe.provenance import base_lineage

    fake_packages(tmp_path / "site")
    monkeypatch.setattr(embedded, "_convert_gguf", lambda model, gguf, out: (out / "config.json").write_text("{}")
                        or (out / "model.safetensors").write_bytes(b"weights"))
    lineage = base_lineage("embedded:fake-gemma")
    assert lineage["source"] == "embedded" and lineage["license"].startswith("Gemma Terms of Use")
    metadata = card_metadata([(tmp_path, {"base_model": "embedded:fake-gemma", "stage": "sft"})])
    assert metadata.license == "gemma" and metadata.base_model == "google/gemma-3-270m"


def test_an_export_of_a_gemma_model_carries_the_terms(tmp_path, fake_gemma, monkeypatch):
    from alignpipe.embedded import pass_terms_on

    fake_packages(tmp_path / "site")
    monkeypatch.setattr(embedded, "_convert_gguf", fake_conversion)
    (tmp_path / "export").mkdir()
    assert pass_terms_on("embedded:fake-gemma", tmp_path / "export") == ["GEMMA_TERMS.html", "NOTICE.md"]
    assert (tmp_path / "export" / "GEMMA_TERMS.html").read_text() == "<html>the terms</html>"
    assert pass_terms_on("embedded", tmp_path / "export") == []  # Apache-2.0: the card says so, no file to add
