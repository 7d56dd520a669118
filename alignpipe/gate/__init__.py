"""The safety gate: scorers that turn a model's outputs into numbers (toxicity, ...) for promotion decisions."""
