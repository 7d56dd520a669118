"""The baseline of bench/bench.py: the same training as alignpipe's, as a plain TRL script (no alignpipe code).

    python bench/trl_baseline.py sft SETTINGS.json RESULT.json

SETTINGS.json holds the literal values alignpipe resolved from its recipe (model path, data file, batch, length,
learning rate, LoRA, ...); this script passes them to transformers, peft and TRL the way their documentation
shows, and writes the same numbers alignpipe records in its manifest: setup and training seconds, steps, loss,
and on a GPU the peak allocated memory.
"""

from __future__ import annotations

import json
import sys
import time

import psutil
import torch
from datasets import load_dataset
from peft import LoraConfig, PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
)


def load_model(settings: dict, auto_class=AutoModelForCausalLM, **extra):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[settings["precision"]]
    kwargs = {"dtype": dtype, **extra}
    if settings["quantization"] == "4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    return auto_class.from_pretrained(settings["model"], **kwargs)


def reward_function(settings: dict, tokenizer):
    """GRPO's reward: the score of the reward-model adapter in settings["reward_adapter"] on prompt + answer."""
    scorer = load_model(settings, AutoModelForSequenceClassification, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    scorer = PeftModel.from_pretrained(scorer, settings["reward_adapter"]).eval()

    def score(prompts, completions, **_):
        rewards = []
        for prompt, completion in zip(prompts, completions):
            ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
            with torch.no_grad():
                rewards.append(scorer(input_ids=torch.tensor([ids], device=scorer.device)).logits[0, 0].item())
        return rewards

    return score


def main(task: str, settings_path: str, result_path: str) -> None:
    settings = json.loads(open(settings_path, encoding="utf-8").read())
    tokenizer = AutoTokenizer.from_pretrained(settings["model"])
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = load_dataset("json", data_files=settings["train"], split="train")
    model = load_model(settings)
    peft_config = LoraConfig(r=settings["lora_r"], lora_alpha=settings["lora_alpha"], lora_dropout=settings["lora_dropout"],
                             target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(
        output_dir=settings["output_dir"], max_steps=settings["max_steps"],
        per_device_train_batch_size=settings["batch_size"], learning_rate=settings["learning_rate"],
        lr_scheduler_type=settings["lr_scheduler"], warmup_steps=settings["warmup_steps"], optim=settings["optimizer"],
        bf16=settings["precision"] == "bf16", fp16=settings["precision"] == "fp16",
        gradient_checkpointing=settings["gradient_checkpointing"], save_strategy="no",
        logging_steps=settings["logging_steps"], report_to="none", seed=settings["seed"],
        use_cpu=not torch.cuda.is_available(),
    )
    if task == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=model, args=SFTConfig(**common, max_length=settings["max_length"]),
                             train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    elif task == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, max_length=settings["max_length"], beta=settings["beta"], loss_type=["sigmoid"])
        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config)
    else:
        from trl import GRPOConfig, GRPOTrainer

        args = GRPOConfig(**common, beta=settings["beta"], num_generations=settings["num_generations"],
                          max_completion_length=settings["max_completion_length"], temperature=1.0)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward_function(settings, tokenizer)], args=args,
                              train_dataset=dataset.select_columns(["prompt"]), processing_class=tokenizer,
                              peft_config=peft_config)

    setup_seconds = time.time() - psutil.Process().create_time()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    output = trainer.train()
    result = {
        "setup_seconds": setup_seconds,
        "train_seconds": time.perf_counter() - started,
        "global_step": output.global_step,
        "train_loss": output.training_loss,
    }
    if torch.cuda.is_available():
        result["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    open(result_path, "w", encoding="utf-8").write(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4])
