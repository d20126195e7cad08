"""The retraining dataset on disk: append-only Parquet, partitioned by day, de-duplicated by post id.

Layout (hive-style, readable by pyarrow, DuckDB, Spark, pandas)::

    <root>/day=2026-11-24/part-20261124T101500123456-1f2e3d4c.parquet
           day=2026-11-25/...

``day`` is the UTC date of ``labelled_at``. Each file holds one row per label with its provenance (SCHEMA).
Files are written atomically (:mod:`pipeline.dataset.files`) and never modified; :meth:`DatasetStore.compact`
may later replace a day's files with one file of its winning rows (and its audit rows).

Precedence: a post may be labelled many times; its **winner** is the label with the highest
``(source rank, labelled_at)``, ranks human 2 > frontier 1 > import 0. So a human review overrides the
frontier's label whatever their times, and within a source the newest label wins. Equal precedence (the same
label delivered twice) keeps the first one written.

Audit labels (``audit``: the frontier judged a final verdict drawn into the random audit sample) are the
unbiased sample that live precision is measured on, so they are never lost to precedence: an audit label that
does not beat the winner (a human already reviewed the post) is still written as a row that does not win, once
per audited verdict; and the winning row of a post that was audited carries ``audit`` true whichever label won
(:func:`winners`), so evaluation and retraining know the post came from the random sample. ``agrees`` and the
``audited_*`` columns stay those of the audit row itself; :func:`audit_rows` picks the audit rows.

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
    pa.field("audit", pa.bool_()),
    pa.field("agrees", pa.bool_()),
    pa.field("verdict_id", pa.string()),
    pa.field("audited_decision", pa.string()),
    pa.field("audited_category", pa.string()),
    pa.field("audited_route", pa.string()),
])
"""One row per label written. ``model_scores`` is the small model's category → probability at the time.
``audit``: the label is from the audit sample (null in files written before the column existed: false);
``agrees``: whether the audit's judge agreed with the audited verdict, whose id, decision, category (null: allowed)
and route are ``verdict_id`` and ``audited_*``."""

AuditKey = tuple[str, str]
"""(post id, audited verdict id): an audit label is kept once per audited verdict."""

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
    """Every label that became a row: the new winners, and audit labels kept though they do not win."""
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
        self._audits: set[AuditKey] = set()
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
                table = pq.read_table(path, columns=["post_id", "source", "labelled_at", "audit", "verdict_id"],
                                      schema=SCHEMA)
            except FileNotFoundError:  # compacted away: its rows are in the file that replaced it
                continue
            ranks = pc.index_in(table["source"], value_set=pa.array(list(SOURCE_RANK)))
            times = pc.cast(table["labelled_at"], pa.int64())
            for post_id, rank, micros in zip(table["post_id"].to_pylist(), ranks.to_pylist(), times.to_pylist(),
                                             strict=True):
                self._improve(post_id, Precedence(rank, micros))
            for post_id, audit, audited in zip(table["post_id"].to_pylist(), table["audit"].to_pylist(),
                                               table["verdict_id"].to_pylist(), strict=True):
                if audit:
                    self._audits.add((post_id, audited or ""))
            self._seen.add(path)
        return len(new)

    def append(self, labels: Iterable[Label]) -> AppendResult:
        """Durably write the labels that change a post's winner; by the time this returns they are on disk.

        Within one call only each post's best label is written (an earlier one it beats is ``superseded``), and
        every audit label not written before (one per audited verdict), winning or not (see the module docstring).
        """
        self.refresh()
        best: dict[str, tuple[Precedence, Label, bool]] = {}  # post id -> (precedence, label, a new audit row?)
        kept: list[Label] = []  # audit labels written although they do not win
        reserved: set[AuditKey] = set()
        skipped: list[tuple[Label, SkipReason]] = []
        for label in labels:
            precedence = Precedence.of(label)
            pending = best.get(label.post_id)
            held = pending[0] if pending is not None else self._index.get(label.post_id)
            key = audit_key(label)
            new_audit = key is not None and key not in self._audits and key not in reserved
            if held is None or precedence > held:
                if pending is not None:
                    if pending[2]:
                        kept.append(pending[1])  # the audit row of its verdict: kept although it does not win
                    else:
                        skipped.append((pending[1], "superseded"))
                best[label.post_id] = (precedence, label, new_audit)
            elif new_audit:
                kept.append(label)
            else:
                skipped.append((label, "duplicate" if precedence == held else "superseded"))
            if new_audit and key is not None:
                reserved.add(key)
        written = [label for _, label, _ in best.values()] + kept
        files = self._write(written, utcnow())
        for precedence, label, _ in best.values():
            self._index[label.post_id] = precedence
        self._audits |= reserved
        return AppendResult(tuple(written), tuple(skipped), tuple(files))

    def rows(self) -> pa.Table:
        """Every row on disk, superseded ones included (provenance, audits)."""
        return self._read()[1]

    def current(self) -> pa.Table:
        """The de-duplicated dataset: each post's winning row, sorted by post id."""
        return winners(self.rows())

    def compact(self) -> CompactResult:
        """Rewrite the files present now as one file per day holding only the winning rows and the audit rows.

        Files other workers write meanwhile are left alone. A crash midway leaves the old and the new files
        side by side: equal rows, which :func:`winners` resolves, and the next compaction removes. Best run at a
        quiet time: a worker writing into a day folder the compaction empties and removes fails its batch (which
        it then re-reads; nothing is lost).
        """
        self.refresh()
        files, rows = self._read()
        if not files:
            return CompactResult(0, 0, 0, 0)
        kept = kept_rows(rows)
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
        "audit": label.audit,
        "agrees": label.agrees,
        "verdict_id": label.verdict_id,
        "audited_decision": label.audited.decision if label.audited is not None else None,
        "audited_category": label.audited.category if label.audited is not None else None,
        "audited_route": label.audited.route if label.audited is not None else None,
    } for label in labels]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def row_labels(row: Mapping[str, object]) -> tuple[str, ...]:
    """A row's labels: ``label`` when set (the primary label), else the multi-label ``labels``."""
    label = row.get("label")
    if isinstance(label, str):
        return (label,)
    labels = row.get("labels")
    return tuple(str(name) for name in labels) if isinstance(labels, list | tuple) else ()


def audit_key(label: Label) -> AuditKey | None:
    """Which audited verdict an audit label judges (None for other labels)."""
    return (label.post_id, label.verdict_id or "") if label.audit else None


def audit_rows(rows: pa.Table) -> pa.Table:
    """The audit labels among ``rows``: one per audited verdict (post id and ``verdict_id``), the first written."""
    return rows.take(_audit_indices(rows))


def winners(rows: pa.Table) -> pa.Table:
    """Each post's winning row (highest source rank, then newest ``labelled_at``, then first written), with
    ``audit`` true when any row of the post is an audit label (the post is in the random audit sample)."""
    if rows.num_rows == 0:
        return rows
    won = rows.take(_winner_indices(rows))
    sampled = rows.filter(pc.fill_null(rows["audit"], False))["post_id"].combine_chunks()
    marked = pc.is_in(won["post_id"], value_set=sampled)
    return won.set_column(won.schema.get_field_index("audit"), SCHEMA.field("audit"), marked)


def kept_rows(rows: pa.Table) -> pa.Table:
    """What a compaction keeps: each post's winning row and every audit row (:func:`audit_rows`), as written."""
    keep = pc.unique(pa.concat_arrays([_winner_indices(rows), _audit_indices(rows)]))
    return rows.take(pc.take(keep, pc.sort_indices(keep)))


def _first_of_runs(keys: pa.Array) -> pa.Array:
    """True where a sorted key differs from the one before (the first row of each run)."""
    if len(keys) == 0:
        return pa.array([], pa.bool_())
    return pa.concat_arrays([pa.array([True]), pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))])


def _winner_indices(rows: pa.Table) -> pa.Array:
    if rows.num_rows == 0:
        return pa.array([], pa.int64())
    ranked = rows.select(["post_id", "labelled_at", "written_at"]).append_column(
        "_rank", pc.index_in(rows["source"], value_set=pa.array(list(SOURCE_RANK)))).append_column(
        "_row", pa.array(range(rows.num_rows), pa.int64()))
    ordered = ranked.sort_by([("post_id", "ascending"), ("_rank", "descending"), ("labelled_at", "descending"),
                              ("written_at", "ascending"), ("_row", "ascending")])
    first = _first_of_runs(ordered["post_id"].combine_chunks())
    return ordered.filter(first)["_row"].combine_chunks()


def _audit_indices(rows: pa.Table) -> pa.Array:
    marked = rows.select(["post_id", "verdict_id", "written_at", "labelled_at", "audit"]).append_column(
        "_row", pa.array(range(rows.num_rows), pa.int64()))
    marked = marked.filter(pc.fill_null(marked["audit"], False))
    if marked.num_rows == 0:
        return pa.array([], pa.int64())
    ordered = marked.sort_by([("post_id", "ascending"), ("verdict_id", "ascending"), ("written_at", "ascending"),
                              ("labelled_at", "ascending"), ("_row", "ascending")])
    keys = pc.binary_join_element_wise(ordered["post_id"], pc.fill_null(ordered["verdict_id"], ""), "\x1f")
    return ordered.filter(_first_of_runs(keys.combine_chunks()))["_row"].combine_chunks()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
