"""Toxicity from a user-supplied Hugging Face text classifier (`gate.toxicity.model`, `score toxicity --model`)."""

from __future__ import annotations

from alignpipe.errors import AlignpipeError


class HFClassifierToxicityScorer:
    """Scores with a Hugging Face sequence classifier (`model` is a local path or a hub id).

    The score is the probability of the toxic label: the one named `toxic_label`, else one whose name says toxic /
    offensive / hate / abusive, else label 1 of a two-label model. Softmax over the labels for single-label models,
    sigmoid for multi-label ones (problem_type "multi_label_classification") and for a single logit."""

    def __init__(self, model: str, toxic_label: str | None = None, batch_size: int = 16, max_length: int = 512,
                 device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model)
        except (OSError, ValueError) as error:
            raise AlignpipeError(f"cannot load the toxicity classifier {model!r} (the offline scorers are named "
                                 f"default, learned, lexicon): {error}") from error
        if self.tokenizer.pad_token is None:  # decoder-only classifiers often ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.model.config.pad_token_id is None:  # needed to find the last real token of a padded row
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        config = self.model.config
        self.label = _toxic_label_index(config.id2label, config.num_labels, toxic_label)
        self.sigmoid = config.num_labels == 1 or config.problem_type == "multi_label_classification"
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, texts: list[str]) -> list[float]:
        import torch

        scores: list[float] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**batch).logits.float()
            probabilities = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=-1)
            scores += probabilities[:, self.label].tolist()
        return scores


def _toxic_label_index(id2label: dict[int, str], num_labels: int, wanted: str | None) -> int:
    labels = {int(index): str(name).lower() for index, name in id2label.items()}
    if num_labels == 1:
        return 0
    if wanted is not None:
        for index, name in labels.items():
            if name == wanted.lower():
                return index
        raise AlignpipeError(f"the classifier has no label {wanted!r}; its labels are {sorted(labels.values())}")
    for index, name in labels.items():
        if any(word in name for word in ("toxic", "offens", "hate", "abus")) and not name.startswith(("non", "not")):
            return index
    if num_labels == 2:
        return 1  # LABEL_0 / LABEL_1: by convention 1 is the positive (here: toxic) class
    raise AlignpipeError(f"cannot tell which label means toxic among {sorted(labels.values())}; pass toxic_label")
