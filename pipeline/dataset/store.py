"""The retraining dataset on disk: append-only Parquet, partitioned by day, de-duplicated by post id.

Layout (hive-style, readable by pyarrow, DuckDB, Spark, pandas)::

    <root>/day=2026-11-24/part-20261124T101500123456-1f2e3d4c.parquet
           day=2026-11-25/...

``day`` is the UTC date of ``labelled_at``. Each file holds one row per label with its provenance (SCHEMA).
Files are written atomically (:mod:`pipeline.dataset.files`) and never modified; :meth:`DatasetStore.compact`
may later replace a day's files with one file of its winning rows.

Precedence: a post may be labelled many times; its **winner** is the label with the highest
``(source rank, labelled_at)``, ranks human 2 > frontier 1 > import 0. So a human review overrides the
frontier's label whatever their times, and within a source the newest label wins. Equal precedence (the same
label delivered twice) keeps the first one written.

The store keeps an index post id → the winner's precedence, loaded when it opens. :meth:`DatasetStore.append`
writes only labels that beat the current winner, so a batch delivered again after a crash adds no rows; the
dataset grows without duplicates. A superseded row stays on disk (provenance) but :meth:`DatasetStore.current`
never returns it. Several workers may append to one root: each refreshes its index from the files the others
wrote before it writes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.dataset.files import TEMP_PREFIX, atomic_write, fsync_dir, remove_stale_temp_files
from pipeline.errors import ConfigError
from pipeline.records import Label, LabelSource, utcnow

SOURCE_RANK: Mapping[LabelSource, int] = {"import": 0, "frontier": 1, "human": 2}
"""Which source wins for one post, whatever the times: a higher rank always beats a lower one."""

PARTITION = "day"
_TIME = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

SCHEMA = pa.schema([
    pa.field("post_id", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("label", pa.string()),
    pa.field("labels", pa.list_(pa.string())),
    pa.field("source", pa.string(), nullable=False),
    pa.field("confidence", pa.float64()),
    pa.field("model_scores", pa.map_(pa.string(), pa.float64())),
    pa.field("model_version", pa.string()),
    pa.field("policy_version", pa.string()),
    pa.field("labelled_at", _TIME, nullable=False),
    pa.field("written_at", _TIME, nullable=False),
])
"""One row per label written. ``model_scores`` is the small model's category → probability at the time."""

SkipReason = Literal["duplicate", "superseded"]
"""Why a label added no row: ``duplicate`` has the same precedence as the winner (a redelivery),
``superseded`` a lower one (an older label, or a lower-ranked source)."""


@dataclass(frozen=True, order=True, slots=True)
class Precedence:
    """What decides between two labels of one post: the larger wins."""

    rank: int
    labelled_us: int
    """``labelled_at`` in microseconds since the Unix epoch (UTC)."""

    @classmethod
    def of(cls, label: Label) -> Precedence:
        return cls(SOURCE_RANK[label.source], (_utc(label.labelled_at) - _EPOCH) // _US)


@dataclass(frozen=True, slots=True)
class AppendResult:
    written: tuple[Label, ...]
    skipped: tuple[tuple[Label, SkipReason], ...]
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class CompactResult:
    rows_before: int
    rows_after: int
    files_before: int
    files_after: int


class DatasetStore:
    """The dataset under ``root`` (created on the first append). Not thread-safe: one writer per object."""

    def __init__(self, root: Path) -> None:
        if root.exists() and not root.is_dir():
            raise ConfigError(f"{root}: the dataset path is a file, not a folder: point MODCASCADE_FEEDBACK_"
                              "DATASET_DIR (or --dir) at a folder")
        self.root = root
        self._index: dict[str, Precedence] = {}
        self._seen: set[Path] = set()
        if root.is_dir():
            remove_stale_temp_files(root)
        self.refresh()

    def __len__(self) -> int:
        """Posts with a label (after the last refresh)."""
        return len(self._index)

    def files(self) -> list[Path]:
        """Every data file, in name order (hidden temp files of writers in progress are not data)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob(f"{PARTITION}=*/*.parquet") if not p.name.startswith(TEMP_PREFIX))

    def refresh(self) -> int:
        """Fold files written since the last look (by other workers) into the index; returns how many."""
        new = [path for path in self.files() if path not in self._seen]
        for path in new:
            try:
                table = pq.read_table(path, columns=["post_id", "source", "labelled_at"])
            except FileNotFoundError:  # compacted away: its rows are in the file that replaced it
                continue
            ranks = pc.index_in(table["source"], value_set=pa.array(list(SOURCE_RANK)))
            times = pc.cast(table["labelled_at"], pa.int64())
            for post_id, rank, micros in zip(table["post_id"].to_pylist(), ranks.to_pylist(), times.to_pylist(),
                                             strict=True):
                self._improve(post_id, Precedence(rank, micros))
            self._seen.add(path)
        return len(new)

    def append(self, labels: Iterable[Label]) -> AppendResult:
        """Durably write the labels that change a post's winner; by the time this returns they are on disk.

        Within one call only each post's best label is written (an earlier one it beats is ``superseded``).
        """
        self.refresh()
        best: dict[str, tuple[Precedence, Label]] = {}
        skipped: list[tuple[Label, SkipReason]] = []
        for label in labels:
            precedence = Precedence.of(label)
            pending = best.get(label.post_id)
            held = pending[0] if pending is not None else self._index.get(label.post_id)
            if held is None or precedence > held:
                if pending is not None:
                    skipped.append((pending[1], "superseded"))
                best[label.post_id] = (precedence, label)
            else:
                skipped.append((label, "duplicate" if precedence == held else "superseded"))
        written = [label for _, label in best.values()]
        files = self._write(written, utcnow())
        for precedence, label in best.values():
            self._index[label.post_id] = precedence
        return AppendResult(tuple(written), tuple(skipped), tuple(files))

    def rows(self) -> pa.Table:
        """Every row on disk, superseded ones included (provenance, audits)."""
        return self._read()[1]

    def current(self) -> pa.Table:
        """The de-duplicated dataset: each post's winning row, sorted by post id."""
        return winners(self.rows())

    def compact(self) -> CompactResult:
        """Rewrite the files present now as one file per day holding only the winning rows.

        Files other workers write meanwhile are left alone. A crash midway leaves the old and the new files
        side by side: equal rows, which :func:`winners` resolves, and the next compaction removes. Best run at a
        quiet time: a worker writing into a day folder the compaction empties and removes fails its batch (which
        it then re-reads; nothing is lost).
        """
        self.refresh()
        files, rows = self._read()
        if not files:
            return CompactResult(0, 0, 0, 0)
        kept = winners(rows)
        written = self._write_table(kept, utcnow())
        for path in files:
            path.unlink()
        for folder in {path.parent for path in files}:
            if any(folder.iterdir()):
                fsync_dir(folder)
            else:
                with contextlib.suppress(OSError):  # a writer just added a file: keep the folder
                    folder.rmdir()
        fsync_dir(self.root)
        self._seen = set(written)
        return CompactResult(rows.num_rows, kept.num_rows, len(files), len(written))

    # -- internals ----------------------------------------------------------------------------------------

    def _read(self) -> tuple[list[Path], pa.Table]:
        """The files and their rows. A file compacted away while we read is retried with a fresh listing (its
        rows are in the compacted file, written before it was deleted)."""
        for _ in range(3):
            files = self.files()
            try:
                tables = [pq.read_table(path, schema=SCHEMA) for path in files]
            except FileNotFoundError:
                continue
            return files, pa.concat_tables(tables) if tables else SCHEMA.empty_table()
        raise ConfigError(f"{self.root}: files kept disappearing while reading: is a compaction looping? Retry")

    def _improve(self, post_id: str, precedence: Precedence) -> None:
        held = self._index.get(post_id)
        if held is None or precedence > held:
            self._index[post_id] = precedence

    def _write(self, labels: list[Label], written_at: datetime) -> list[Path]:
        if not labels:
            return []
        return self._write_table(to_table(labels, written_at), written_at)

    def _write_table(self, table: pa.Table, written_at: datetime) -> list[Path]:
        """One new file per day present in ``table``."""
        days = pc.strftime(table["labelled_at"], format="%Y-%m-%d").to_pylist()
        paths = []
        for day in sorted(set(days)):
            part = table.filter(pc.equal(pa.array(days), day))
            name = f"part-{written_at:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
            path = self.root / f"{PARTITION}={day}" / name
            sink = pa.BufferOutputStream()
            pq.write_table(part, sink)
            atomic_write(path, sink.getvalue().to_pybytes())
            self._seen.add(path)
            paths.append(path)
        return paths


def to_table(labels: Iterable[Label], written_at: datetime) -> pa.Table:
    """Labels as rows of SCHEMA (times in UTC; a naive ``labelled_at`` is taken as UTC)."""
    rows = [{
        "post_id": label.post_id,
        "text": label.text,
        "label": label.label,
        "labels": list(label.labels) if label.labels is not None else None,
        "source": label.source,
        "confidence": label.confidence,
        "model_scores": label.model_scores,
        "model_version": label.model_version,
        "policy_version": label.policy_version,
        "labelled_at": _utc(label.labelled_at),
        "written_at": written_at,
    } for label in labels]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def row_labels(row: Mapping[str, object]) -> tuple[str, ...]:
    """A row's labels: ``label`` when set (the primary label), else the multi-label ``labels``."""
    label = row.get("label")
    if isinstance(label, str):
        return (label,)
    labels = row.get("labels")
    return tuple(str(name) for name in labels) if isinstance(labels, list | tuple) else ()


def winners(rows: pa.Table) -> pa.Table:
    """Each post's winning row (highest source rank, then newest ``labelled_at``, then first written)."""
    if rows.num_rows == 0:
        return rows
    ranked = rows.append_column("_rank", pc.index_in(rows["source"], value_set=pa.array(list(SOURCE_RANK))))
    ordered = ranked.sort_by([("post_id", "ascending"), ("_rank", "descending"), ("labelled_at", "descending"),
                              ("written_at", "ascending")])
    ids = ordered["post_id"].combine_chunks()
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))])
    return ordered.filter(first).drop_columns(["_rank"])


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
