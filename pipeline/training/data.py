"""Labelled examples for training: load JSONL / CSV / Parquet, check them, split them, hash them.

Every problem the user can fix (missing file or column, empty text, unknown or rare labels) raises
:class:`~pipeline.errors.ConfigError` naming the file, the field and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import codec
from pipeline.errors import ConfigError, DecodeError
from pipeline.policy.model import Taxonomy

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_SHOW = 5  # how many offending line numbers a message lists


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled post. ``line`` is the 1-based line (JSONL/CSV, header is line 1) or row number."""

    text: str
    label: str
    line: int


def load_examples(path: str | Path, *, text_field: str = "text", label_field: str = "label") -> list[Example]:
    """Read labelled examples from a ``.jsonl``, ``.csv`` or ``.parquet`` file; other fields are ignored."""
    file = Path(path)
    kind = FORMATS.get(file.suffix.lower())
    if kind is None:
        raise ConfigError(f"{file}: unsupported file type '{file.suffix}': use one of {', '.join(sorted(FORMATS))}")
    if not file.is_file():
        raise ConfigError(f"{file}: file not found: check the path (relative paths start at {Path.cwd()})")
    if kind == "jsonl":
        rows = _read_jsonl(file)
    elif kind == "csv":
        rows = _read_csv(file)
    else:
        rows = _read_parquet(file)
    if not rows:
        raise ConfigError(f"{file}: the file has no rows: add labelled examples (fields '{text_field}', "
                          f"'{label_field}')")
    return _to_examples(file, rows, text_field, label_field)


def check_labels(examples: Sequence[Example], *, min_per_label: int = 2, taxonomy: Taxonomy | None = None,
                 source: str = "<examples>") -> Counter[str]:
    """Return the label counts; raise if a label is rare or (given a taxonomy) not one of its classes."""
    counts = Counter(e.label for e in examples)
    if taxonomy is not None:
        known = {taxonomy.safe, *taxonomy.categories}
        unknown = sorted(set(counts) - known)
        if unknown:
            listed = ", ".join(f"'{u}' ({counts[u]} rows)" for u in unknown)
            raise ConfigError(f"{source}: label: {listed} not in the policy taxonomy "
                              f"[{', '.join(sorted(known))}]: relabel those rows or add the label to "
                              "taxonomy.categories")
    if len(counts) < 2:
        raise ConfigError(f"{source}: label: only {sorted(counts)} present: a classifier needs at least two labels")
    rare = sorted((label, n) for label, n in counts.items() if n < min_per_label)
    if rare:
        listed = ", ".join(f"'{label}' has {n}" for label, n in rare)
        raise ConfigError(f"{source}: label: {listed} (need at least {min_per_label} per label): add examples "
                          "or drop the label")
    return counts


def shuffled_by_label(examples: Iterable[Example], rng: random.Random) -> list[list[Example]]:
    """The rows of each label (labels in sorted order), each group in file order then shuffled by ``rng``:
    the deterministic basis of every stratified selection."""
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    groups = []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda e: (e.line, e.text))
        rng.shuffle(group)
        groups.append(group)
    return groups


def split(examples: Sequence[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Deterministic stratified split: each label contributes ``round(n * val_fraction)`` rows (at least one,
    and at least one left for training when it has two or more) to validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction: {val_fraction} is outside (0, 1): use e.g. 0.2")
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    for group in shuffled_by_label(examples, rng):
        n_val = max(1, round(len(group) * val_fraction))
        if len(group) >= 2:
            n_val = min(n_val, len(group) - 1)
        val.extend(group[:n_val])
        train.extend(group[n_val:])
    rng.shuffle(train)
    val.sort(key=lambda e: (e.line, e.text))
    return train, val


def data_hash(examples: Iterable[Example]) -> str:
    """sha256 over the canonical rows (text and label, in file order): a stable id for the training data."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(codec.dumps([example.text, example.label]))
        digest.update(b"\n")
    return digest.hexdigest()


def _to_examples(file: Path, rows: list[tuple[int, Mapping[str, Any]]], text_field: str,
                 label_field: str) -> list[Example]:
    found = sorted({key for _, row in rows for key in row})
    for field in (text_field, label_field):
        if not any(field in row for _, row in rows):
            raise ConfigError(f"{file}: no '{field}' column (columns found: {', '.join(found) or 'none'}): "
                              f"rename the column or pass the {'text' if field == text_field else 'label'}_field "
                              "option")
    examples: list[Example] = []
    empty_text: list[int] = []
    empty_label: list[int] = []
    for line, row in rows:
        text, label = row.get(text_field), row.get(label_field)
        text_s = "" if text is None else str(text)
        label_s = "" if label is None else str(label).strip()
        if not text_s.strip():
            empty_text.append(line)
        elif not label_s:
            empty_label.append(line)
        else:
            examples.append(Example(text=text_s, label=label_s, line=line))
    for field, lines in ((text_field, empty_text), (label_field, empty_label)):
        if lines:
            shown = ", ".join(str(n) for n in lines[:_SHOW]) + (", ..." if len(lines) > _SHOW else "")
            raise ConfigError(f"{file}: {field}: {len(lines)} row(s) with an empty '{field}' (lines {shown}): "
                              "fill them in or remove those rows")
    return examples


def _read_jsonl(file: Path) -> list[tuple[int, Mapping[str, Any]]]:
    rows: list[tuple[int, Mapping[str, Any]]] = []
    with file.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = codec.loads(raw)
            except DecodeError as exc:
                raise ConfigError(f"{file}:{number}: {exc}: fix or remove that line (one JSON object per "
                                  "line)") from exc
            if not isinstance(value, dict):
                raise ConfigError(f"{file}:{number}: expected a JSON object, got {type(value).__name__}: "
                                  "write one object per line")
            rows.append((number, value))
    return rows


def _read_csv(file: Path) -> list[tuple[int, Mapping[str, Any]]]:
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        # line_num counts physical lines, so quoted multi-line cells still report where the row ends
        return [(reader.line_num, row) for row in reader]


def _read_parquet(file: Path) -> list[tuple[int, Mapping[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError(f"{file}: not a readable Parquet file ({exc}): re-export it as Parquet") from exc
    return [(number, row) for number, row in enumerate(table.to_pylist(), start=1)]
