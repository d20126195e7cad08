"""Output sinks of ``modcascade batch``: append-only files whose durable length is a checkpointable mark.

The run checkpoints each sink's mark together with the input's cursor; reopening with that mark throws away what
was written after it (it is done again), so every input ends in the outputs exactly once::

    sink = open_sink(Path("verdicts.parquet"), resume_mark=checkpoint_marks.get("verdicts"))   # None: start over
    sink.append(verdicts)
    mark = sink.mark()                             # durable (flush + fsync); checkpoint it
    ...
    sink.finish(); sink.close()                    # at the end of a complete run

    JSONL (any path not ending in .parquet / .pq)  one ``codec.encode(record)`` line per record; mark = bytes.
    Parquet (.parquet, .pq; Verdict records only)   each mark writes what was appended since as one part file
                                                     ``<path>.parts/part-000001.parquet`` (temp file, fsync,
                                                     rename); mark = parts. finish merges the parts into
                                                     ``<path>`` one at a time (atomic rename) and removes them.

The merged Parquet file records its part sizes, so a run killed after ``finish`` but before its checkpoint said
so still resumes: the file is split back into the parts the checkpoint knows. :func:`read_verdicts` reads either
format back (an unfinished Parquet sink from its parts).
"""

from __future__ import annotations

import os
import shutil
import typing
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path
from typing import IO, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import codec
from pipeline.batch.sources.parquet_file import PARQUET_SUFFIXES
from pipeline.dataset.files import TEMP_PREFIX, TEMP_SUFFIX, atomic_write, fsync_dir
from pipeline.errors import ConfigError, DecodeError
from pipeline.records import Record, Verdict

_MERGE_ROW_GROUP_ROWS = 65_536  # parts are one chunk each; the merged file gets row groups of a useful size
_PART_ROWS_KEY = b"modcascade.part_rows"  # merged file metadata: rows per part, to split it back (see _unmerge)


class RecordSink(Protocol):
    path: Path

    def append(self, records: Sequence[Record]) -> None: ...

    def mark(self) -> int: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...


def open_sink(path: Path, *, resume_mark: int | None) -> RecordSink:
    """A Parquet sink of verdicts for ``.parquet`` / ``.pq`` paths, else a JSONL sink. ``resume_mark=None``
    starts the file over; a mark from :meth:`RecordSink.mark` throws away what came after it."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return ParquetVerdictSink(path, resume_mark=resume_mark)
    return JsonlSink(path, resume_mark=resume_mark)


class JsonlSink:
    """One JSON record a line. The mark is the byte length; resuming truncates the file to it."""

    def __init__(self, path: Path, *, resume_mark: int | None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = resume_mark is None or (resume_mark == 0 and not path.exists())
        self._file: IO[bytes]
        if fresh:
            self._file = path.open("wb")
        else:
            assert resume_mark is not None
            if not path.exists():
                raise ConfigError(f"{path} is gone, but the checkpoint says {resume_mark} bytes of it were written; "
                                  "delete the run's state to start over")
            self._file = path.open("r+b")
            size = os.fstat(self._file.fileno()).st_size
            if size < resume_mark:
                self._file.close()
                raise ConfigError(f"{path} has {size} bytes, fewer than the {resume_mark} the checkpoint recorded: "
                                  "it was changed since; delete the run's state to start over")
            self._file.truncate(resume_mark)
            self._file.seek(resume_mark)
        self._size = resume_mark or 0
        self._new_entry = fresh  # a new file's folder entry is made durable with the first mark

    def append(self, records: Sequence[Record]) -> None:
        data = b"".join(codec.encode(record) + b"\n" for record in records)
        self._file.write(data)
        self._size += len(data)

    def mark(self) -> int:
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._new_entry:
            fsync_dir(self.path.parent)
            self._new_entry = False
        return self._size

    def finish(self) -> None:
        self.mark()

    def close(self) -> None:
        self._file.close()


def _verdict_schema() -> pa.Schema:
    """Every field of :class:`Verdict`, in order; nullable where the model allows None."""
    types: dict[str, pa.DataType] = {
        "schema_version": pa.int32(), "verdict_id": pa.string(), "post_id": pa.string(), "decision": pa.string(),
        "category": pa.string(), "scores": pa.map_(pa.string(), pa.float64()), "route": pa.string(),
        "final": pa.bool_(), "model": pa.string(), "model_version": pa.string(), "policy": pa.string(),
        "policy_version": pa.string(), "latency_ms": pa.float64(), "cost_usd": pa.float64(),
        "rationale": pa.string(), "flags": pa.list_(pa.string()), "supersedes": pa.string(), "guard": pa.string(),
        "decided_at": pa.timestamp("us", tz="UTC"),
    }
    fields = Verdict.model_fields
    if set(types) != set(fields):
        raise TypeError(f"the Parquet schema of Verdict is out of date: add {sorted(set(fields) - set(types))}, "
                        f"remove {sorted(set(types) - set(fields))} in {__name__}._verdict_schema")
    return pa.schema([pa.field(name, types[name], nullable=type(None) in typing.get_args(field.annotation))
                      for name, field in fields.items()])


VERDICT_SCHEMA = _verdict_schema()


def verdict_table(verdicts: Sequence[Verdict]) -> pa.Table:
    """Verdicts as an Arrow table with :data:`VERDICT_SCHEMA`."""
    columns: dict[str, list[Any]] = {name: [getattr(v, name) for v in verdicts] for name in VERDICT_SCHEMA.names}
    columns["scores"] = [list(v.scores.items()) for v in verdicts]
    columns["flags"] = [list(v.flags) for v in verdicts]
    return pa.Table.from_pydict(columns, schema=VERDICT_SCHEMA)


class ParquetVerdictSink:
    """Verdicts buffered between marks; each mark writes them as one part file; finish merges the parts."""

    def __init__(self, path: Path, *, resume_mark: int | None) -> None:
        self.path = path
        self.parts_dir = path.with_name(path.name + ".parts")
        self._buffer: list[Verdict] = []
        self._finished = False
        if resume_mark is None:
            if self.parts_dir.exists():
                shutil.rmtree(self.parts_dir)
            path.unlink(missing_ok=True)  # a stale result must not pass for this run's
            self._parts = 0
            return
        numbers = self._part_numbers()
        if set(range(1, resume_mark + 1)) - set(numbers) and self._unmerge(resume_mark):
            numbers = self._part_numbers()
        missing = sorted(set(range(1, resume_mark + 1)) - set(numbers))
        if missing:
            raise ConfigError(f"{self.parts_dir} lacks part(s) {missing[:5]} of the {resume_mark} the checkpoint "
                              "recorded; delete the run's state to start over")
        for number in numbers:
            if number > resume_mark:  # written after the last checkpoint: done again
                self._part(number).unlink()
        if self.parts_dir.exists():
            for temp in self.parts_dir.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
                temp.unlink()
        # A merged file next to the parts (killed while finish removed them) is stale: finish makes it again.
        self.path.unlink(missing_ok=True)
        self._parts = resume_mark

    def _unmerge(self, resume_mark: int) -> bool:
        """Split a merged file back into its first ``resume_mark`` parts (by the part sizes it records).

        For a run killed after :meth:`finish` and before its checkpoint said so: resuming then finds the merged
        file where the checkpoint expects parts. False when the file cannot be split that way.
        """
        if not self.path.is_file():
            return False
        with pq.ParquetFile(self.path) as merged:
            try:
                sizes = codec.loads((merged.schema_arrow.metadata or {}).get(_PART_ROWS_KEY, b"null"))
            except DecodeError:
                return False
            if not isinstance(sizes, list) or len(sizes) < resume_mark:
                return False
            batches = merged.iter_batches(batch_size=_MERGE_ROW_GROUP_ROWS)
            held: pa.Table = VERDICT_SCHEMA.empty_table()
            for number, rows in enumerate(sizes[:resume_mark], start=1):
                while held.num_rows < rows:
                    held = pa.concat_tables([held, pa.Table.from_batches([next(batches)]).cast(VERDICT_SCHEMA)])
                self._write_part(number, held.slice(0, rows))
                held = held.slice(rows)
        return True

    def _write_part(self, number: int, table: pa.Table) -> None:
        out = pa.BufferOutputStream()
        pq.write_table(table, out)
        atomic_write(self._part(number), out.getvalue().to_pybytes())

    def _part(self, number: int) -> Path:
        return self.parts_dir / f"part-{number:06d}.parquet"

    def _part_numbers(self) -> list[int]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(int(p.name[5:-8]) for p in self.parts_dir.glob("part-*.parquet") if p.name[5:-8].isdigit())

    def append(self, records: Sequence[Record]) -> None:
        for record in records:
            if not isinstance(record, Verdict):
                raise TypeError(f"{self.path}: a Parquet sink holds Verdict records, not {type(record).__name__}; "
                                "write other records to a .jsonl path")
        self._buffer.extend(typing.cast(Sequence[Verdict], records))

    def mark(self) -> int:
        if self._buffer:
            self._write_part(self._parts + 1, verdict_table(self._buffer))
            self._parts += 1
            self._buffer.clear()
        return self._parts

    def finish(self) -> None:
        """Merge the parts into ``path``, one part at a time, then remove them. An empty run gives an empty file."""
        if self._finished:
            return
        self.mark()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f"{TEMP_PREFIX}{self.path.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
        sizes = [pq.read_metadata(self._part(n)).num_rows for n in range(1, self._parts + 1)]
        schema = VERDICT_SCHEMA.with_metadata({_PART_ROWS_KEY: codec.dumps(sizes)})
        try:
            with pq.ParquetWriter(temp, schema) as writer:
                pending: list[pa.Table] = []
                for number in range(1, self._parts + 1):
                    pending.append(pq.read_table(self._part(number), schema=VERDICT_SCHEMA))
                    if sum(t.num_rows for t in pending) >= _MERGE_ROW_GROUP_ROWS:
                        writer.write_table(pa.concat_tables(pending).replace_schema_metadata(schema.metadata))
                        pending.clear()
                if pending:
                    writer.write_table(pa.concat_tables(pending).replace_schema_metadata(schema.metadata))
            fd = os.open(temp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)
            fsync_dir(self.path.parent)
        self._finished = True

    def close(self) -> None:
        self._buffer.clear()  # not marked: a resume would throw it away anyway


def read_verdicts(path: Path) -> Iterator[Verdict]:
    """The verdicts of a sink's file, JSONL or Parquet. A Parquet sink that was not finished yet is read from its
    parts (all of them, also those after the last checkpoint)."""
    if path.suffix.lower() not in PARQUET_SUFFIXES:
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        with path.open("rb") as file:
            for line in file:
                if line.strip():
                    yield codec.decode(line, Verdict)
        return
    parts_dir = path.with_name(path.name + ".parts")
    files = [path] if path.is_file() else sorted(parts_dir.glob("part-*.parquet")) if parts_dir.is_dir() else None
    if files is None:
        raise ConfigError(f"{path}: no such file (nor its {parts_dir.name} folder)")
    for part in files:
        with pq.ParquetFile(part) as parquet:
            for batch in parquet.iter_batches():
                for row in batch.to_pylist():
                    row["scores"] = dict(row["scores"])
                    row["flags"] = tuple(row["flags"] or ())
                    row["decided_at"] = row["decided_at"].astimezone(UTC)
                    yield Verdict.model_validate(row)


__all__ = ["VERDICT_SCHEMA", "JsonlSink", "ParquetVerdictSink", "RecordSink", "open_sink", "read_verdicts",
           "verdict_table"]
