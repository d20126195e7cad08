"""`modcascade bench`: run the benchmarks and write their tables into BENCHMARKS.md."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from pipeline.bench import classify, report
from pipeline.policy import Policy, load_policy

BENCHMARKS_MD = Path("BENCHMARKS.md")


async def run_bench(console: Console, *, model_dir: Path, policy_path: Path, n_posts: int,
                    batch_sizes: Sequence[int], backends: Sequence[str], max_length: int, write: bool) -> None:
    policy = load_policy(policy_path)
    with tempfile.TemporaryDirectory(prefix="modcascade-bench-") as scratch:
        model = model_dir
        if not (model_dir / "config.json").exists():
            model = Path(scratch) / "untrained-minilm"
            console.print(f"no model at {model_dir}: measuring an untrained MiniLM classifier for {policy.name}'s "
                          "taxonomy (throughput depends on the architecture, not the weights)")
            _untrained_classifier(policy, model)
        console.print(f"classification throughput: {', '.join(backends)} at batch sizes "
                      f"{', '.join(map(str, batch_sizes))} on {n_posts} posts (this takes a few minutes)")
        rows = await classify.run(model, policy, n_posts=n_posts, batch_sizes=batch_sizes, backends=backends,
                                  max_length=max_length)
    table = classify.render_markdown(rows, machine=report.machine(), date=report.today(),
                                     model=model_dir.name if model == model_dir else "untrained MiniLM-L6 head",
                                     max_length=max_length)
    console.print(table)
    if write:
        report.replace_section(BENCHMARKS_MD, "classify", table)
        console.print(f"written to {BENCHMARKS_MD}")


def _untrained_classifier(policy: Policy, out: Path) -> None:
    from transformers import AutoTokenizer, BertForSequenceClassification

    from pipeline.training.config import default_base_model

    labels = (policy.taxonomy.safe, *policy.taxonomy.categories)
    base = default_base_model()
    model = BertForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
