"""`modcascade train`: load and check the data, train, write the model card, print what came out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.training.baseline import METHOD as BASELINE_METHOD
from pipeline.training.baseline import tfidf_baseline
from pipeline.training.config import TrainConfig
from pipeline.training.data import check_labels, load_examples, split


def run_train(console: Console, *, data: Path, out: Path, config: TrainConfig, policy_path: Path | None,
              text_field: str, label_field: str) -> None:
    examples = load_examples(data, text_field=text_field, label_field=label_field)
    taxonomy = None
    if policy_path is not None:
        from pipeline.policy import load_policy

        taxonomy = load_policy(policy_path).taxonomy
    counts = check_labels(examples, min_per_label=config.min_per_label, taxonomy=taxonomy, source=str(data))
    spread = ", ".join(f"{label} {n:,}" for label, n in counts.most_common())
    console.print(f"{len(examples):,} examples from {data}: {spread}")
    from pipeline.training.family import model_family

    family = model_family(config.base_model)
    how = "full fine-tune" if family == "encoder" else f"LoRA r={config.lora_r}, merged for serving"
    console.print(f"base model {config.base_model} ({family}, {how}), {config.epochs} epochs, "
                  f"max_length {config.max_length}")
    train_rows, val_rows = split(examples, config.val_fraction, config.seed)  # the trainer's split, recomputed
    baseline = tfidf_baseline(train_rows, val_rows, sorted(counts))
    console.print(f"baseline ({BASELINE_METHOD}): validation macro-F1 {baseline['macro_f1']:.4f}")

    from pipeline.training.card import write_card
    from pipeline.training.trainer import train  # imports torch: only once the data is known to be good

    result = train(config, examples, out)
    card = write_card(result, data_path=data, data_size=len(examples), baseline=baseline)

    table = Table(title=f"validation ({result.val_size:,} held-out examples)")
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, m in result.validation["per_class"].items():
        table.add_row(label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(table)
    v = result.validation
    console.print(f"macro-F1 {v['macro_f1']:.4f} (baseline {baseline['macro_f1']:.4f}), accuracy "
                  f"{v['accuracy']:.4f}, calibration error (ECE) {v['ece']:.4f}; trained in {result.seconds:,.0f} s")
    console.print(f"model {card['version']} written to [bold]{out}[/] (model_card.json, MODEL_CARD.md)")
    console.print(f"serve it: modcascade serve-model --model {out}")
