"""PPO's four roles on one loaded base model, each a LoRA adapter of it: no second copy of the model in memory.

    "default"  the policy: the sft stage's adapter, trained further (the adapter the stage saves)
    "ref"      the reference: a frozen copy of the policy's starting adapter, for the KL term
    "reward"   the reward model: the rm stage's adapter, frozen, with its score head
    "critic"   the value model: its own adapter, trained, with a value head (a one-output linear layer)

The heads sit on the backbone's last hidden states. One role runs at a time (`acting_as`); an adapter switch only
changes which LoRA weights the base's linear layers add, so memory is one base, four adapters and two heads.
The rm stage trained its adapter on this base as a sequence classifier; the causal LM's backbone is the same
module, so the same adapter and head give the same scores (tested against `load_reward_model`).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import torch

from alignpipe import models, runs
from alignpipe.config import LoraConfig, Recipe
from alignpipe.embedded import embedded_model_dir, is_embedded
from alignpipe.errors import AlignpipeError
from alignpipe.reward import RewardModel

POLICY, REFERENCE, REWARD, CRITIC = "default", "ref", "reward", "critic"
FROZEN = (REFERENCE, REWARD)


def check_reward_model(recipe: Recipe, reward_stage: Path) -> None:
    """PPO scores with the rm stage's adapter on this run's base, so the rm must have been trained on that base."""
    manifest = runs.read_manifest(reward_stage)
    trained_on = manifest.get("recipe", {}).get("model", {})
    if _same_model(trained_on.get("base", manifest.get("base_model")), recipe.model.base):
        if trained_on.get("quantization", recipe.model.quantization) != recipe.model.quantization:
            print(f"warning: the reward model {reward_stage} was trained with model.quantization="
                  f"{trained_on.get('quantization')}, this run uses {recipe.model.quantization}: its scores will "
                  "differ a little from those it was trained to give.", flush=True)
        return
    raise AlignpipeError(
        f"rlhf.reward_model={reward_stage} was trained on the base {trained_on.get('base')!r}, and this run's "
        f"model.base is {recipe.model.base!r}. ppo runs the reward model as an adapter of this run's base, so it "
        "must be an rm stage trained on the same base (train one with `alignpipe rm RECIPE`)."
    )


def _same_model(first: str | None, second: str) -> bool:
    if first is None:
        return False
    # Compared as names and paths only: the rm's recorded base need not be a model folder here any more.
    paths = [embedded_model_dir(name) if is_embedded(name) else Path(name) for name in (first, second)]
    if all(path.exists() for path in paths):
        return paths[0].resolve() == paths[1].resolve()
    return first == second


def with_policy_adapter(model: Any, lora: LoraConfig) -> Any:
    """The policy as a PeftModel: the parent's adapter is already "default"; from the bare base, a fresh one."""
    from accelerate.utils import is_peft_model
    from peft import get_peft_model

    return model if is_peft_model(model) else get_peft_model(model, models.lora_config(lora, task_type="CAUSAL_LM"))


@contextmanager
def acting_as(model: Any, role: str) -> Iterator[None]:
    """Run `model` as one role; frozen roles stay frozen (peft's set_adapter would make them trainable)."""
    previous = model.active_adapter
    model.set_adapter(role, inference_mode=role in FROZEN)
    try:
        yield
    finally:
        model.set_adapter(previous, inference_mode=previous in FROZEN)


def backbone(model: Any) -> Any:
    """The transformer under the LM head (LlamaModel for a Llama), the same module a sequence classifier uses."""
    causal_lm = model.get_base_model()
    return getattr(causal_lm, causal_lm.base_model_prefix)


def last_hidden_states(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       position_ids: torch.Tensor | None = None) -> torch.Tensor:
    output = backbone(model)(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False)
    return output.last_hidden_state


def add_reward_model(model: Any, reward_stage: Path) -> RewardModel:
    """Load the rm stage's adapter as the "reward" role and return it as a RewardModel (same scoring interface)."""
    from peft import PeftConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter_dir = reward_stage / "adapter"
    config = PeftConfig.from_pretrained(str(adapter_dir))
    config.task_type, config.modules_to_save, config.inference_mode = "CAUSAL_LM", None, True
    model.add_adapter(REWARD, config)
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    head_weights = {name.rsplit(".", 1)[1]: value for name, value in weights.items() if ".score." in name}
    lora_weights = {name: value for name, value in weights.items() if ".score." not in name}
    result = set_peft_model_state_dict(model, lora_weights, adapter_name=REWARD)
    if result.unexpected_keys or "weight" not in head_weights:
        raise AlignpipeError(f"The reward adapter in {adapter_dir} does not fit this base model "
                             f"({(result.unexpected_keys or ['no score head'])[:3]}).")
    head = torch.nn.Linear(head_weights["weight"].shape[1], 1, bias="bias" in head_weights)
    head.load_state_dict(head_weights)
    head.requires_grad_(False)
    tokenizer = models.load_tokenizer(str(adapter_dir))
    metrics = runs.read_manifest(reward_stage)["metrics"]
    scorer = SharedBaseScorer(model, head.to(model.device), tokenizer.pad_token_id)
    return RewardModel(scorer, tokenizer, metrics["reward_mean"], metrics["reward_std"])


class SharedBaseScorer:
    """The reward role called like a sequence classifier: `scorer(input_ids, attention_mask).logits[:, 0]`.

    reward.score_conversations calls it as it calls a loaded reward model. Its eval()/train() leave the shared
    model's mode alone: the policy's training loop owns it (and PPO runs without dropout, so modes agree).
    """

    def __init__(self, model: Any, head: torch.nn.Linear, pad_token_id: int) -> None:
        self.model, self.head, self.pad_token_id = model, head, pad_token_id
        self.training = False

    @property
    def device(self) -> torch.device:
        return self.model.device

    def eval(self) -> SharedBaseScorer:
        return self

    def train(self, mode: bool = True) -> SharedBaseScorer:
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        with torch.no_grad(), acting_as(self.model, REWARD):
            hidden = last_hidden_states(self.model, input_ids, attention_mask)
        # As transformers' sequence classifiers do: the score at the last token that is not padding.
        not_pad = (input_ids != self.pad_token_id).int()
        last = (torch.arange(input_ids.shape[1], device=input_ids.device) * not_pad).argmax(-1)
        picked = hidden[torch.arange(len(input_ids), device=hidden.device), last]
        return SimpleNamespace(logits=self.head(picked.to(self.head.weight.dtype)))


def add_critic(model: Any, start_from: str, reward_model: RewardModel | None) -> torch.nn.Linear:
    """The "critic" adapter and its value head, trainable, from the reward model or from the policy.

    From the reward model (InstructGPT): its adapter, and its head rescaled by the reward's mean and std, so that
    the first values are the normalised reward the policy is trained on. From the policy: its adapter and a zero
    head (every first value 0, the mean of a normalised reward).
    """
    hidden_size = model.get_base_model().config.hidden_size
    value_head = torch.nn.Linear(hidden_size, 1, bias=True)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    if start_from == "reward_model":
        if reward_model is None or not isinstance(reward_model.model, SharedBaseScorer):
            raise AlignpipeError("rlhf.ppo.critic_init=reward_model needs the reward model on this base.")
        models.copy_adapter(model, REWARD, CRITIC, trainable=True)
        with torch.no_grad():  # the critic starts as the reward model, normalised as its rewards are
            value_head.weight.copy_(reward_model.model.head.weight / reward_model.spread)
            value_head.bias.fill_(-reward_model.reward_mean / reward_model.spread)
    else:
        models.copy_adapter(model, POLICY, CRITIC, trainable=True)
    return value_head.to(model.device)


def disable_dropout(model: Any) -> None:
    """PPO's ratio must be exactly 1 before the first update: no dropout anywhere (N+ details, Huang et al. 2024)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
