"""The model card: ``model_card.json`` (machine-readable) and ``MODEL_CARD.md`` (the same, for people)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import codec
from pipeline.training.baseline import METHOD as BASELINE_METHOD
from pipeline.training.config import TrainResult
from pipeline.training.metrics import Evaluation

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"


def model_version(data_hash: str, now: datetime | None = None) -> str:
    """``m-YYYYMMDDHHMMSS-<first 8 hex of the data hash>`` (UTC)."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return f"m-{stamp}-{data_hash[:8]}"


def build_card(result: TrainResult, *, data_path: str | Path | None = None, data_size: int | None = None,
               now: datetime | None = None, baseline: Evaluation | None = None) -> dict[str, Any]:
    """The card as plain data; ``data_size`` defaults to train + validation rows; ``baseline`` is the
    TF-IDF + logistic-regression result on the same validation split."""
    created = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": model_version(result.data_hash, created),
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "architecture": result.architecture,
        "adapter": result.adapter,
        "base_model": str(result.config.base_model),
        "labels": list(result.labels),
        "data": {
            "path": None if data_path is None else str(data_path),
            "sha256": result.data_hash,
            "size": data_size if data_size is not None else result.train_size + result.val_size,
            "train_size": result.train_size,
            "val_size": result.val_size,
        },
        "training": {
            **result.config.as_dict(),
            "class_weights": None if result.class_weights is None else dict(zip(result.labels, result.class_weights,
                                                                                 strict=True)),
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "seconds": round(result.seconds, 2),
        },
        "validation": dict(result.validation),
        "baseline": None if baseline is None else {"method": BASELINE_METHOD, **baseline},
    }


def write_card(result: TrainResult, *, data_path: str | Path | None = None, data_size: int | None = None,
               now: datetime | None = None, baseline: Evaluation | None = None) -> dict[str, Any]:
    """Write both card files into ``result.out_dir`` and return the card."""
    card = build_card(result, data_path=data_path, data_size=data_size, now=now, baseline=baseline)
    result.out_dir.mkdir(parents=True, exist_ok=True)
    (result.out_dir / CARD_JSON).write_bytes(codec.dumps_pretty(card))
    (result.out_dir / CARD_MD).write_text(render_markdown(card), encoding="utf-8")
    return card


def render_markdown(card: dict[str, Any]) -> str:
    """A short Markdown rendering of the card."""
    data, training, validation = card["data"], card["training"], card["validation"]
    lines = [
        f"# Model {card['version']}",
        "",
        f"{card['architecture']} fine-tuned from `{card['base_model']}` on {data['size']} examples "
        f"(`{data['path']}`, sha256 `{data['sha256'][:16]}…`; {data['train_size']} train / "
        f"{data['val_size']} validation).",
        "",
        f"Labels: {', '.join(f'`{label}`' for label in card['labels'])}",
        "",
        "## Validation",
        "",
        f"macro-F1 **{validation['macro_f1']:.4f}**, accuracy {validation['accuracy']:.4f}, "
        f"expected calibration error {validation['ece']:.4f} (15 bins).",
        "",
        "| label | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, s in validation["per_class"].items():
        lines.append(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    baseline = card.get("baseline")
    if baseline:
        lines += ["", f"Baseline on the same split, {baseline['method']}: macro-F1 {baseline['macro_f1']:.4f}, "
                      f"accuracy {baseline['accuracy']:.4f}, ECE {baseline['ece']:.4f}."]
    lines += ["", "## Training settings", ""]
    lines += [f"- {key}: {value}" for key, value in training.items() if key != "class_weights"]
    return "\n".join(lines) + "\n"
