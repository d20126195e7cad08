"""`modcascade train`: load and check the data, train, write the model card, print what came out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.training.config import TrainConfig
from pipeline.training.data import check_labels, load_examples


def run_train(console: Console, *, data: Path, out: Path, config: TrainConfig, policy_path: Path | None,
              text_field: str, label_field: str) -> None:
    from pipeline.training.card import write_card
    from pipeline.training.trainer import train  # imports torch: only when training

    examples = load_examples(data, text_field=text_field, label_field=label_field)
    taxonomy = None
    if policy_path is not None:
        from pipeline.policy import load_policy

        taxonomy = load_policy(policy_path).taxonomy
    counts = check_labels(examples, min_per_label=config.min_per_label, taxonomy=taxonomy, source=str(data))
    spread = ", ".join(f"{label} {n:,}" for label, n in counts.most_common())
    console.print(f"{len(examples):,} examples from {data}: {spread}")
    console.print(f"base model {config.base_model}, {config.epochs} epochs, max_length {config.max_length}")
    result = train(config, examples, out)
    card = write_card(result, data_path=data, data_size=len(examples))

    table = Table(title=f"validation ({result.val_size:,} held-out examples)")
    for column in ("label", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, m in result.validation["per_class"].items():
        table.add_row(label, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    console.print(table)
    v = result.validation
    console.print(f"macro-F1 {v['macro_f1']:.4f}, accuracy {v['accuracy']:.4f}, calibration error (ECE) "
                  f"{v['ece']:.4f}; {result.seconds:,.0f} s")
    console.print(f"model {card['version']} written to [bold]{out}[/] (model_card.json, MODEL_CARD.md)")
    console.print(f"serve it: modcascade serve-model --model {out}")
