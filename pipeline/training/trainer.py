"""The one training loop: fine-tune a base model as ``*ForSequenceClassification`` on labelled posts.

Two paths share it (``training.family`` picks one from the base model's ``config.json``): an encoder
(BERT-like) is fine-tuned in full; a decoder (Qwen2, Llama, Mistral, ...) gets LoRA adapters on its
attention/MLP projections and a fully trained ``score`` head, and the adapters are merged into the weights
before saving, so both paths save a plain Hugging Face model folder that vLLM serves as is.

``train`` splits the examples (stratified, seeded), fine-tunes with the transformers ``Trainer`` using a
class-weighted cross-entropy, evaluates macro-F1 on the validation split every epoch, stops early when it
stops improving, reloads the best epoch and saves model + tokenizer with ``id2label`` / ``label2id`` so
both Hugging Face and vLLM's pooling runner read the label names.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    PreTrainedTokenizerBase,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

from pipeline.errors import ConfigError
from pipeline.training.config import ARCHITECTURE, TrainConfig, TrainResult, class_weights
from pipeline.training.data import Example, check_labels, data_hash, split
from pipeline.training.family import DEFAULT_LORA_TARGETS, HEAD_MODULES, Family, model_family
from pipeline.training.metrics import evaluate, macro_f1
from pipeline.training.progress import TrainingProgress, quiet_transformers

__all__ = ["ARCHITECTURE", "TrainConfig", "TrainResult", "train"]

_CHECKPOINTS = ".checkpoints"  # scratch folder inside out_dir, removed after training


def _encode(examples: Sequence[Example], label2id: dict[str, int], tokenizer: PreTrainedTokenizerBase,
            max_length: int) -> list[dict[str, Any]]:
    encoded = tokenizer([e.text for e in examples], truncation=True, max_length=max_length)
    return [
        {"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
         "labels": label2id[e.label]}
        for i, e in enumerate(examples)
    ]


@dataclass(frozen=True, slots=True)
class _WeightedLoss:
    """Cross-entropy with fixed class weights (``None``: plain cross-entropy); the Trainer's loss hook."""

    weights: torch.Tensor | None

    def __call__(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs.logits
        weight = None if self.weights is None else self.weights.to(logits.device)
        return torch.nn.functional.cross_entropy(logits, labels, weight=weight)


@quiet_transformers()
def train(config: TrainConfig, examples: Sequence[Example], out_dir: str | Path, progress: bool = True) -> TrainResult:
    """Fine-tune ``config.base_model`` on ``examples`` and save the best epoch's model to ``out_dir``.

    ``progress`` shows one bar over the steps (:class:`TrainingProgress`); either way the Trainer's own bars,
    printed log dictionaries and weight-initialisation notes stay off."""
    started = time.perf_counter()
    out = Path(out_dir)
    family = model_family(config.base_model)
    counts = check_labels(examples, min_per_label=config.min_per_label)
    labels = tuple(sorted(counts))
    label2id = {name: i for i, name in enumerate(labels)}
    train_rows, val_rows = split(examples, config.val_fraction, config.seed)

    previous_threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        set_seed(config.seed)  # before loading: the new classifier head is initialised randomly
        tokenizer = AutoTokenizer.from_pretrained(config.base_model)
        model, adapter = _load_model(config, family, labels, tokenizer)
        weights = (class_weights([label2id[e.label] for e in train_rows], len(labels))
                   if config.class_weighting else None)
        args = TrainingArguments(
            output_dir=str(out / _CHECKPOINTS),
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.batch_size * 2,
            learning_rate=config.learning_rate,
            seed=config.seed,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_only_model=True,
            save_total_limit=config.early_stopping_patience + 1,
            load_best_model_at_end=True,
            metric_for_best_model="macro_f1",
            greater_is_better=True,
            logging_strategy="epoch",
            report_to="none",
            disable_tqdm=True,  # the Trainer's nested bars: TrainingProgress draws one instead
            dataloader_pin_memory=False,
            label_names=["labels"],  # a peft wrapper hides the forward signature the Trainer reads them from
            bf16=config.bf16,
            gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=_encode(train_rows, label2id, tokenizer, config.max_length),
            eval_dataset=_encode(val_rows, label2id, tokenizer, config.max_length),
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=lambda p: _eval_metrics(p, len(labels)),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)],
            compute_loss_func=_WeightedLoss(None if weights is None else torch.tensor(weights, dtype=torch.float32)),
        )
        trainer.remove_callback(PrinterCallback)  # prints each log entry as a raw dict
        trainer.remove_callback(ProgressCallback)
        if progress:
            trainer.add_callback(TrainingProgress("training"))
        trainer.train()
        prediction = trainer.predict(trainer.eval_dataset)
        logits = np.asarray(prediction.predictions)
        probs = torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy()
        validation = evaluate(probs, [label2id[e.label] for e in val_rows], labels)
        architecture = _save(trainer, tokenizer, out, merge=adapter is not None)
        best_epoch = _best_epoch(trainer.state.best_model_checkpoint, trainer.state.log_history)
        epochs_run = float(trainer.state.epoch or 0.0)
    finally:
        torch.set_num_threads(previous_threads)
        shutil.rmtree(out / _CHECKPOINTS, ignore_errors=True)
    return TrainResult(
        out_dir=out, config=config, labels=labels, class_weights=None if weights is None else tuple(weights),
        data_hash=data_hash(examples), train_size=len(train_rows), val_size=len(val_rows), epochs_run=epochs_run,
        best_epoch=best_epoch, validation=validation, seconds=time.perf_counter() - started,
        architecture=architecture, adapter=adapter)


def _load_model(config: TrainConfig, family: Family, labels: tuple[str, ...],
                tokenizer: PreTrainedTokenizerBase) -> tuple[Any, dict[str, Any] | None]:
    """The classifier to train and, for a decoder, its LoRA settings (``None``: full fine-tune)."""
    label2id = {name: i for i, name in enumerate(labels)}
    options: dict[str, Any] = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": label2id}
    if config.bf16:
        options["dtype"] = torch.bfloat16
    if family == "encoder":
        model = AutoModelForSequenceClassification.from_pretrained(config.base_model, **options)
        model.config.architectures = [ARCHITECTURE]
        return model, None

    from peft import LoraConfig, TaskType, get_peft_model

    if tokenizer.pad_token is None:  # most decoders ship without one; the pad id only marks the padding
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "right"  # keep the head of long posts (see pipeline.backends.base)
    # the classifier reads the last token that is not padding: it finds it through config.pad_token_id
    model = AutoModelForSequenceClassification.from_pretrained(
        config.base_model, pad_token_id=tokenizer.pad_token_id, **options)
    targets = config.lora_targets or DEFAULT_LORA_TARGETS
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=list(targets),
                      modules_to_save=list(HEAD_MODULES))
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"TrainConfig.lora_targets: {list(targets)} do not fit {config.base_model} ({exc}): set "
                          "lora_targets to the names of its attention/MLP linear layers") from exc
    adapter = {"type": "lora", "r": config.lora_r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
               "targets": list(targets), "trained_in_full": list(HEAD_MODULES), "merged": True}
    return peft_model, adapter


def _save(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, out: Path, *, merge: bool) -> str:
    """Save the (best) model and tokenizer as a plain HF folder; LoRA adapters are merged in first.
    Returns the saved architecture."""
    if not merge:
        trainer.save_model(str(out))
        (out / "training_args.bin").unlink(missing_ok=True)  # a pickle; the model card records the settings
        return ARCHITECTURE
    model: Any = trainer.model
    merged = model.merge_and_unload()
    architecture = type(merged).__name__
    merged.config.architectures = [architecture]
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return architecture


def _eval_metrics(prediction: EvalPrediction, n_classes: int) -> dict[str, float]:
    logits = np.asarray(prediction.predictions)
    return {"macro_f1": macro_f1(np.asarray(prediction.label_ids), logits.argmax(axis=-1), n_classes)}


def _best_epoch(checkpoint: str | None, history: list[dict[str, float]]) -> int | None:
    """The epoch whose checkpoint was reloaded (checkpoints are named ``checkpoint-<global step>``)."""
    if checkpoint is None:
        return None
    step = int(checkpoint.rsplit("-", 1)[-1])
    for entry in history:
        if entry.get("step") == step and "epoch" in entry:
            return round(entry["epoch"])
    return None
