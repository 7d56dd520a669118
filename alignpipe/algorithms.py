"""The rlhf algorithms, one record each: what data it learns from, whether it generates, whether it keeps a
reference, its default KL strength and what trains it.

config.py validates `rlhf.algorithm` against this table, stages/rlhf.py loads data and builds the trainer by it,
template_check.py reads the same data, and plan.py sizes the stage from it. This module imports nothing of
alignpipe at load time, so that all of them can import it without a cycle. Adding an algorithm: one record here,
its trainer in stages/rlhf.py's `build_trainer` (or a module of its own, as ppo.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# What each algorithm learns from: alignpipe.data.PURPOSES (the layouts each reads).
PREFERENCE, UNPAIRED, PROMPTS = "pairs", "kto", "prompts"

DATA_DESCRIPTIONS = {
    PREFERENCE: "preference pairs {'prompt', 'chosen', 'rejected'}",
    UNPAIRED: "{'prompt', 'completion', 'label'} lines or preference pairs",
    PROMPTS: "prompts {'prompt': [...]} (pairs work too: their prompts are used)",
}


@dataclass(frozen=True)
class Algorithm:
    name: str
    data: str  # PREFERENCE, UNPAIRED or PROMPTS
    online: bool  # samples its own answers and is rewarded by the run's reward model
    reference: bool  # keeps a frozen copy of the starting policy (KL term or implicit reward)
    default_beta: float  # rlhf.beta when the recipe leaves it unset
    beta_source: str  # where that default comes from
    trainer: str  # what trains it
    critic: bool = False  # learns a value function beside the policy (actor-critic)


ALGORITHMS: dict[str, Algorithm] = {
    "dpo": Algorithm("dpo", PREFERENCE, online=False, reference=True, default_beta=0.1, beta_source="TRL's default",
                     trainer="trl.DPOTrainer (rlhf.loss_type)"),
    "kto": Algorithm("kto", UNPAIRED, online=False, reference=True, default_beta=0.1, beta_source="TRL's default",
                     trainer="trl.KTOTrainer"),
    "orpo": Algorithm("orpo", PREFERENCE, online=False, reference=False, default_beta=0.1, beta_source="TRL's default",
                      trainer="trl.experimental.orpo.ORPOTrainer"),
    "simpo": Algorithm("simpo", PREFERENCE, online=False, reference=False, default_beta=2.0,
                       beta_source="Meng et al. 2024 use 2.0-2.5",
                       trainer="trl.experimental.cpo.CPOTrainer with loss_type=simpo"),
    "grpo": Algorithm("grpo", PROMPTS, online=True, reference=True, default_beta=0.04,
                      beta_source="Shao et al. 2024 (DeepSeekMath)", trainer="trl.GRPOTrainer"),
    "rloo": Algorithm("rloo", PROMPTS, online=True, reference=True, default_beta=0.05, beta_source="TRL's default",
                      trainer="trl.RLOOTrainer"),
    "ppo": Algorithm("ppo", PROMPTS, online=True, reference=True, default_beta=0.05,
                     beta_source="Huang et al. 2024 (The N+ Implementation Details of RLHF with PPO)",
                     trainer="alignpipe.ppo.PPOTrainer (our own: TRL removed its PPOTrainer in 1.13)", critic=True),
}


def algorithm_names() -> str:
    return ", ".join(ALGORITHMS)
