"""The `modcascade dataset` commands: open the store, call the pure parts, print what came out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.dataset.export import ExportOptions, export_dataset
from pipeline.dataset.stats import compute_stats, render_stats
from pipeline.dataset.store import DatasetStore, winners
from pipeline.errors import ConfigError


def open_store(folder: Path) -> DatasetStore:
    """The dataset at ``folder``, which must exist (reading a mistyped path must not look like 'no labels')."""
    if not folder.exists():
        raise ConfigError(f"{folder}: no dataset there: pass --dir with the folder the feedback worker writes "
                          "(MODCASCADE_FEEDBACK_DATASET_DIR), or run `modcascade worker feedback` first")
    return DatasetStore(folder)


def run_stats(console: Console, *, folder: Path, policy_path: Path) -> None:
    from pipeline.policy import load_policy

    safe = load_policy(policy_path).taxonomy.safe
    store = open_store(folder)
    rows = store.rows()
    stats = compute_stats(winners(rows), safe=safe, rows=rows)
    render_stats(stats, console, where=str(folder))


def run_export(console: Console, *, folder: Path, options: ExportOptions) -> None:
    report = export_dataset(open_store(folder).current(), options)
    console.print(f"exported to [bold]{report.out}[/]")
    table = Table()
    table.add_column("file")
    table.add_column("rows", justify="right")
    for name, rows in report.rows.items():
        table.add_row(f"{name}.jsonl", f"{rows:,}")
    console.print(table)
    if report.skipped:
        console.print("skipped: " + ", ".join(f"{n:,} {why.replace('_', ' ')}" for why, n in report.skipped.items()))
    if options.golden is not None:
        how = "created (reused as is by later exports)" if report.golden_created else "pinned"
        console.print(f"golden set {options.golden}: {how}; its posts are in no split")
    empty = [name for name, rows in report.rows.items() if rows == 0]
    if empty:
        console.print(f"[yellow]note:[/] {', '.join(empty)} empty: the dataset is small for these fractions")
    console.print(f"manifest: {report.manifest}; train with: modcascade train --data {report.out / 'train.jsonl'} "
                  "--out DIR")


def run_compact(console: Console, *, folder: Path) -> None:
    result = open_store(folder).compact()
    console.print(f"{folder}: {result.rows_before:,} rows in {result.files_before:,} files → {result.rows_after:,} "
                  f"rows in {result.files_after:,} files (superseded labels dropped)")
