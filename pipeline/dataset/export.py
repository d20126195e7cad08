"""`modcascade dataset export`: train / validation / test files from the dataset, and a pinned golden set.

Splits are decided by a stable hash of the post id alone (sha256 of ``SPLIT_SALT`` + id, as a number in
[0, 1), cut at the configured fractions). So a post id is in exactly one split; a post never changes split
when the dataset grows, gets relabelled or is exported again; and no data leaks between splits across runs.

The golden set is the held-out set the promotion gate judges models on, pinned in a file:

- ``--golden FILE`` that exists: its ids (JSONL rows with ``post_id`` or ``id``, or a ``.txt`` of one id per
  line) are the golden set. A row that carries ``text`` and ``label`` keeps them (the golden answers are
  pinned too); a row with only an id takes its text and label from the dataset.
- ``--golden FILE`` that does not exist yet: it is written once, from the test split (the ``golden_size`` test
  posts with the lowest hash, at most half the test split), and reused as is by every later export.

Golden ids are removed from every split (train and validation forever, test too, so each post is scored in
one place) and written to ``golden.jsonl``. Because a created golden set comes from the test split, its posts
were never in train or validation of an earlier export either.

Rows: ``text`` and ``label`` columns (what :func:`pipeline.training.data.load_examples` and ``modcascade
train --data`` read), plus ``post_id`` and ``source``. A multi-label row (no ``label``, several ``labels``) has
no single class to train a classifier on: it is skipped and counted in the manifest; a ``labels`` list of
one is used as that label.

``manifest.json`` records the counts, label spread and sha256 of every file, the fractions and the salt.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from pipeline import codec
from pipeline.dataset.files import atomic_write
from pipeline.dataset.store import row_labels
from pipeline.errors import ConfigError, DecodeError
from pipeline.records import utcnow

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SPLIT_SALT = "modcascade-split-v1"
"""Part of the split hash. Changing it reshuffles every split: old test posts would land in train."""
GOLDEN_FILE = "golden.jsonl"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True, slots=True)
class SplitFractions:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        values = {"train": self.train, "val": self.val, "test": self.test}
        if bad := [f"{name}={value}" for name, value in values.items() if not 0.0 <= value <= 1.0]:
            raise ConfigError(f"split fractions {', '.join(bad)} are outside [0, 1]: use e.g. 0.8 / 0.1 / 0.1")
        if abs(sum(values.values()) - 1.0) > 1e-6:
            raise ConfigError(f"split fractions add up to {sum(values.values()):g}, not 1: adjust --train, --val "
                              "and --test")
        if self.train == 0.0:
            raise ConfigError("the train fraction is 0: nothing would be left to train on")


@dataclass(frozen=True, slots=True)
class ExportOptions:
    out: Path
    fractions: SplitFractions = field(default_factory=SplitFractions)
    golden: Path | None = None
    """The golden set file: read when it exists, written once (from the test split) when it does not."""
    golden_size: int = 200
    """Posts in a golden set created here (at most half the test split)."""
    source: str = "<dataset>"
    """Where the rows came from, for messages and the manifest (e.g. the dataset folder)."""


@dataclass(frozen=True, slots=True)
class ExportReport:
    out: Path
    rows: Mapping[str, int]
    """Rows per written file: train, val, test, and golden when there is a golden set."""
    skipped: Mapping[str, int]
    golden_created: bool
    manifest: Path


def bucket(post_id: str, salt: str = SPLIT_SALT) -> float:
    """A stable number in [0, 1) for a post id."""
    digest = hashlib.sha256(f"{salt}\x1f{post_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(post_id: str, fractions: SplitFractions, salt: str = SPLIT_SALT) -> Split:
    """Which split a post belongs to; depends on nothing but the id, the fractions and the salt."""
    point = bucket(post_id, salt)
    if point < fractions.train:
        return "train"
    if point < fractions.train + fractions.val:
        return "val"
    return "test"


def export_dataset(current: pa.Table, options: ExportOptions) -> ExportReport:
    """Write the split files, the golden set and the manifest under ``options.out``; see the module docstring."""
    if current.num_rows == 0:
        raise ConfigError(f"{options.source}: the dataset has no labels: run `modcascade worker feedback` to fill it "
                          "from the labels topic, or point --dir at the dataset folder")
    rows, skipped = _examples(current.select(["post_id", "text", "label", "labels", "source"]).to_pylist())
    by_id = {row["post_id"]: row for row in rows}
    splits: dict[Split, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for row in rows:
        splits[split_of(row["post_id"], options.fractions)].append(row)

    golden: list[dict[str, Any]] | None = None
    created = False
    if options.golden is not None:
        if options.golden.exists():
            golden, missing = _pinned(options.golden, by_id)
            if missing:
                skipped["golden_missing"] = missing
        else:
            golden = _pick_golden(splits["test"], options.golden_size)
            atomic_write(options.golden, _jsonl(golden))
            created = True
        golden_ids = {row["post_id"] for row in golden}
        splits = {name: [row for row in part if row["post_id"] not in golden_ids] for name, part in splits.items()}

    if not splits["train"]:
        raise ConfigError(f"{options.source}: no rows left for training ({len(rows)} usable rows, "
                          f"{sum(skipped.values())} skipped): add labels or raise --train")
    files: dict[str, tuple[Path, list[dict[str, Any]]]] = {
        name: (options.out / f"{name}.jsonl", part) for name, part in splits.items()}
    if golden is not None:
        files["golden"] = (options.out / GOLDEN_FILE, golden)
    manifest: dict[str, Any] = {
        "created_at": utcnow(),
        "source": options.source,
        "dataset_rows": current.num_rows,
        "split": {"salt": SPLIT_SALT, "train": options.fractions.train, "val": options.fractions.val,
                  "test": options.fractions.test},
        "files": {},
        "skipped": dict(skipped),
        "golden": None if options.golden is None else {"path": str(options.golden), "created": created,
                                                       "sha256": _sha256(options.golden.read_bytes())},
    }
    for name, (path, part) in files.items():
        data = _jsonl(part)
        atomic_write(path, data)
        manifest["files"][name] = {"path": path.name, "rows": len(part), "sha256": _sha256(data),
                                   "labels": dict(sorted(Counter(row["label"] for row in part).items()))}
    manifest_path = options.out / MANIFEST_FILE
    atomic_write(manifest_path, codec.dumps_pretty(manifest))  # last: its presence means the export is whole
    return ExportReport(options.out, {name: len(part) for name, (_, part) in files.items()}, dict(skipped), created,
                        manifest_path)


def _examples(rows: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Single-label rows as export rows, sorted by post id; the others counted by why they were left out."""
    out: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for row in rows:
        labels = row_labels(row)
        if len(labels) != 1:
            skipped["multi_label"] += 1
        elif not str(row["text"]).strip():
            skipped["empty_text"] += 1
        else:
            out.append({"post_id": row["post_id"], "text": row["text"], "label": labels[0], "source": row["source"]})
    out.sort(key=lambda row: row["post_id"])
    return out, skipped


def _pick_golden(test: Sequence[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    if size < 1:
        raise ConfigError(f"golden set size {size}: use at least 1")
    take = min(size, len(test) // 2)
    if take == 0:
        raise ConfigError(f"the test split has {len(test)} posts: too few to set a golden set aside; export more "
                          "labels first, or raise --test")
    chosen = sorted(test, key=lambda row: bucket(row["post_id"]))[:take]
    return sorted(chosen, key=lambda row: row["post_id"])


def _pinned(path: Path, by_id: Mapping[str, dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The golden rows of an existing file, and how many of its ids have neither pinned nor dataset labels."""
    golden: list[dict[str, Any]] = []
    missing = 0
    for post_id, pinned in _golden_entries(path):
        if pinned is not None:
            golden.append(pinned)
        elif post_id in by_id:
            golden.append(by_id[post_id])
        else:
            missing += 1
    if not golden:
        what = f"none of its {missing} ids is in the dataset or carries text and label" if missing else "it is empty"
        raise ConfigError(f"{path}: no golden rows ({what}): check it is this dataset's golden set, or give a new "
                          "path to create one")
    return sorted(golden, key=lambda row: row["post_id"]), missing


def _golden_entries(path: Path) -> Iterable[tuple[str, dict[str, Any] | None]]:
    """(post id, the pinned row when the file gives text and label) per entry of a golden file."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".txt":
            yield line.strip(), None
            continue
        try:
            row = codec.loads(line)
        except DecodeError as exc:
            raise ConfigError(f"{path}:{number}: {exc}: a golden file is JSONL (one object per line) or .txt "
                              "(one post id per line)") from exc
        post_id = row.get("post_id", row.get("id")) if isinstance(row, dict) else None
        if not isinstance(post_id, str | int) or isinstance(post_id, bool):
            raise ConfigError(f"{path}:{number}: post_id: missing: give each golden row a 'post_id' (or 'id')")
        text, label = row.get("text"), row.get("label")
        pinned = None
        if isinstance(text, str) and text.strip() and isinstance(label, str) and label.strip():
            pinned = {"post_id": str(post_id), "text": text, "label": label, "source": row.get("source", "golden")}
        yield str(post_id), pinned


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(codec.dumps(row) + b"\n" for row in rows)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
