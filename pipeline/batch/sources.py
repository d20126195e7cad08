"""Post sources of ``modcascade batch``: files and topic ranges read in chunks, streaming and resumable.

A source hands out posts in chunks of raw records, never the whole input (memory stays flat on files larger than
RAM), each chunk with the cursor of the position after it, so a run resumes exactly where its last checkpoint
stood::

    source = open_file_source(Path("posts.jsonl"))    # or: await open_topic_source(settings, "posts", from_offset=0)
    try:
        async for chunk in source.chunks(2048, start=checkpoint_cursor):   # None: from the start
            ... chunk.records (RawRecord: intake decodes them and dead-letters bad ones) ...
            ... checkpoint chunk.cursor together with the sinks' marks ...
    finally:
        await source.aclose()

Resuming from a chunk's cursor yields exactly the records after that chunk: none twice, none lost. Every chunk
holds ``size`` records except the last; an empty input yields no chunk.

    JSONL (.jsonl, .ndjson)  every non-blank line's bytes, as they are (newline cut), offset = its 1-based line
                             number; not parsed here. Cursor {"rows", "byte", "line"}; progress in bytes.
    CSV (.csv)               header row with at least ``id`` and ``text``; each row becomes a JSON object (empty
                             cells of the other columns dropped, unknown columns kept: Post keeps them in meta);
                             offset = 1-based data row (blank rows are skipped and not counted). A row that cannot
                             be a JSON object (more cells than columns, bytes that are not UTF-8) is passed on as
                             its raw bytes so that intake dead-letters it. Cursor {"rows", "byte", "line"};
                             progress in bytes.
    Parquet (.parquet, .pq)  rows as JSON objects (null cells dropped, times as ISO 8601); resuming skips whole
                             row groups by their metadata. Cursor {"rows"}; progress in rows.
    topic range              every partition, assigned (no consumer group), from an offset (clamped to the log
                             start), a time or the log start, up to the end each partition had when the source was
                             opened. Cursor {"offsets", "starts", "ends"} (partition as a string -> offset);
                             progress in records.

The file sources also accept a bare ``{"rows": n}``: the first ``n`` records are then skipped by reading instead
of seeking. A topic cursor carries its range (``starts``, ``ends``), so a resumed range ends where the interrupted
one would have, even if records were produced in between; ``total_units`` is updated from it when
:meth:`PostSource.chunks` starts. ``identity`` holds what names the input (a file's path, size and mtime; a
topic's name, partition count and start), never the ends, so it is the same for every open of that input.

Topic ranges on the embedded broker (tansu 0.6.0), checked against it:

* ListOffsets(latest) answers one past the *base* offset of a partition's last record batch, not the high
  watermark (a partition holding one batch of 7 records answers 1). So each partition is fetched once from just
  before the listed end, and the high watermark of that fetch (tansu reports it correctly) is the end. On Kafka
  both agree.
* ListOffsets(timestamp) ignores the timestamp and answers the log start. So the broker's answer for
  ``from_time`` is checked against the records around it (the record before must be older, the first one from it
  not older) and, where the check fails, the partition is scanned from its log start for the first record at or
  after that time (Kafka's own definition). On Kafka the check passes and nothing is scanned.
* A fetch that keeps coming back empty before a partition reached its end (the range's last offsets are no
  records: compacted away, transaction markers) ends that partition with a warning instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from pipeline import codec
from pipeline.errors import BrokerError, ConfigError, DecodeError
from pipeline.intake import RawRecord
from pipeline.kafka.clients import broker_errors, make_consumer, start_client
from pipeline.settings import Settings

log = logging.getLogger(__name__)

Cursor = dict[str, Any]
"""Where a source resumes; JSON-able. Files: ``{"rows": n, ...}``; topics: ``{"offsets": {"<partition>": next}}``."""

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
REQUIRED_COLUMNS = ("id", "text")

# A post is at most MODCASCADE_MAX_TEXT_BYTES (32 KiB by default); the csv module's 128 KiB default would still
# stop a long post with an error, while a quote left open would read the rest of the file into one field.
_CSV_FIELD_LIMIT = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Chunk:
    """Up to ``size`` records, with the cursor of the position after them and the progress so far."""

    records: list[RawRecord]
    cursor: Cursor
    done_units: int


class PostSource(Protocol):
    description: str
    """For people: ``posts.jsonl (JSONL, 12.3 MB)``, ``topic posts [0..1234) over 4 partitions``."""
    total_units: int | None
    """Size of the input in ``unit`` (bytes for JSONL and CSV, rows for Parquet, records for a topic range)."""
    unit: str
    """``"B"`` or ``"posts"``."""
    identity: dict[str, Any]
    """What identifies the input for a resume check (stable across opens of the same input)."""

    def chunks(self, size: int, start: Cursor | None) -> AsyncIterator[Chunk]: ...

    async def aclose(self) -> None: ...


# -- files ----------------------------------------------------------------------------------------------------


def open_file_source(path: Path) -> PostSource:
    """A source for a JSONL, CSV or Parquet file (by extension). CSV and Parquet columns are checked here."""
    suffix = path.suffix.lower()
    if suffix not in JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise ConfigError(
            f"{path}: cannot read posts from a {suffix or 'extension-less'} file; accepted: "
            f"{', '.join(JSONL_SUFFIXES + CSV_SUFFIXES + PARQUET_SUFFIXES)} (rename the file if it is one of these)"
        )
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; check the path")
    if suffix in JSONL_SUFFIXES:
        return JsonlSource(path)
    if suffix in CSV_SUFFIXES:
        return CsvSource(path)
    return ParquetSource(path)


class _FileSource(ABC):
    """Common part of the file sources: the blocking reads run in a worker thread, one chunk at a time, so the
    event loop (Message Batch polls, HTTP calls of the runner) is never blocked by the disk."""

    kind: str
    format_name: str
    unit: str

    def __init__(self, path: Path, total_units: int) -> None:
        stat = path.stat()
        self.path = path
        self.label = f"file:{path.name}"
        self.total_units: int | None = total_units
        self.identity: dict[str, Any] = {
            "kind": self.kind, "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        }
        self.description = f"{path.name} ({self.format_name}, {_human_bytes(stat.st_size)})"

    async def chunks(self, size: int, start: Cursor | None = None) -> AsyncIterator[Chunk]:
        _check_size(size)
        chunks = self.iter_chunks(size, start)
        try:
            while (chunk := await asyncio.to_thread(_next_chunk, chunks)) is not None:
                yield chunk
        finally:
            # A cancelled read may still run in its thread; the generator then closes the file when collected.
            with contextlib.suppress(ValueError):
                chunks.close()

    @abstractmethod
    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        """The same chunks, read in the calling thread (each format reads its own way)."""

    async def aclose(self) -> None:  # noqa: B027 (deliberately empty, not abstract: every file source shares it)
        """Nothing to release: files are opened per :meth:`chunks` call."""


def _next_chunk(chunks: Iterator[Chunk]) -> Chunk | None:
    return next(chunks, None)


class JsonlSource(_FileSource):
    kind, format_name, unit = "jsonl", "JSONL", "B"

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.stat().st_size)

    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        _check_size(size)
        rows, skip, byte, line = _text_resume(self.path, start)
        byte, line = byte or 0, line or 0
        chunker = _Chunker(size)
        with self.path.open("rb") as file:
            file.seek(byte)
            for raw in file:
                byte += len(raw)
                line += 1
                value = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw
                if not value.strip():
                    continue
                if skip:
                    skip -= 1
                    continue
                rows += 1
                if full := chunker.add(RawRecord(value=value, topic=self.label, offset=line)):
                    yield full
                if chunker.filled:
                    chunker.seal({"rows": rows, "byte": byte, "line": line}, byte)
        if last := chunker.end({"rows": rows, "byte": byte, "line": line}, byte):
            yield last


class _Chunker:
    """Groups records into chunks of ``size``. A full chunk is handed out only once the next record shows up, so
    the last chunk gets the cursor of the end of the file (past trailing blank lines): progress reaches the total."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._records: list[RawRecord] = []
        self._full: Chunk | None = None

    @property
    def filled(self) -> bool:
        return len(self._records) == self._size

    def add(self, record: RawRecord) -> Chunk | None:
        """Take ``record``; returns the full chunk that comes before it, if one is waiting."""
        full, self._full = self._full, None
        self._records.append(record)
        return full

    def seal(self, cursor: Cursor, done_units: int) -> None:
        """The records taken make a full chunk, which ends at ``cursor``."""
        self._full, self._records = Chunk(self._records, cursor, done_units), []

    def end(self, cursor: Cursor, done_units: int) -> Chunk | None:
        """The last chunk, ending at ``cursor`` (the end of the input)."""
        records = self._full.records if self._full is not None else self._records
        return Chunk(records, cursor, done_units) if records else None


class _Lines:
    """Binary lines decoded for the csv module, counting bytes and keeping the raw bytes of the current row.

    csv.reader pulls exactly the lines of one row before returning it, so after each row ``byte`` is the
    offset where the next row starts: a cursor can seek there. Bytes that are not UTF-8 survive
    (surrogateescape) so that the row can be handed on byte-exact.
    """

    def __init__(self, file: IO[bytes], byte: int, line: int) -> None:
        self._file = file
        self.byte = byte
        self.line = line
        self._raw: list[bytes] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._file.readline()
        if not raw:
            raise StopIteration
        self.byte += len(raw)
        self.line += 1
        self._raw.append(raw)
        return raw.decode("utf-8", "surrogateescape")

    def take(self) -> bytes:
        """The raw bytes of the row just read (its line endings cut off at the end)."""
        raw = b"".join(self._raw)
        self._raw.clear()
        return raw.rstrip(b"\r\n")


class CsvSource(_FileSource):
    kind, format_name, unit = "csv", "CSV", "B"

    def __init__(self, path: Path) -> None:
        super().__init__(path, path.stat().st_size)
        self.columns, self._data_byte, self._data_line = self._read_header()

    def _reader(self, lines: _Lines) -> Iterator[list[str]]:
        csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
        reader = csv.reader(lines)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ConfigError(f"{self.path}: not valid CSV near line {lines.line} ({exc}); fix that row "
                                  "(a quote left open makes the rest of the file one cell)") from exc
            if any(cell.strip() for cell in row):  # blank rows are not data rows
                yield row

    def _read_header(self) -> tuple[tuple[str, ...], int, int]:
        with self.path.open("rb") as file:
            lines = _Lines(file, 0, 0)
            header = next(self._reader(lines), None)
            if header is None:
                raise ConfigError(f"{self.path}: empty CSV; the first row must name the columns, with at least "
                                  f"{' and '.join(REQUIRED_COLUMNS)}")
            columns = tuple(name.strip().lstrip("\ufeff").strip() for name in header)
            _check_columns(self.path, columns)
            if len(set(columns)) != len(columns):
                duplicates = sorted({c for c in columns if columns.count(c) > 1})
                raise ConfigError(f"{self.path}: column(s) {', '.join(duplicates)} appear more than once in the "
                                  "header; rename them")
            return columns, lines.byte, lines.line

    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        _check_size(size)
        rows, skip, byte, line = _text_resume(self.path, start)
        chunker = _Chunker(size)
        with self.path.open("rb") as file:
            lines = _Lines(file, byte, line) if byte is not None and line is not None else \
                _Lines(file, self._data_byte, self._data_line)
            file.seek(lines.byte)
            for row in self._reader(lines):
                raw = lines.take()
                if skip:
                    skip -= 1
                    continue
                rows += 1
                if full := chunker.add(RawRecord(value=self._encode(row, raw), topic=self.label, offset=rows)):
                    yield full
                if chunker.filled:
                    chunker.seal({"rows": rows, "byte": lines.byte, "line": lines.line}, lines.byte)
        if last := chunker.end({"rows": rows, "byte": lines.byte, "line": lines.line}, lines.byte):
            yield last

    def _encode(self, row: list[str], raw: bytes) -> bytes:
        if len(row) > len(self.columns):
            return raw  # cells without a column: which is the text is a guess, so intake dead-letters the row
        post: dict[str, Any] = {}
        for name, cell in zip(self.columns, row, strict=False):  # a short row: the missing cells are empty
            if cell or name in REQUIRED_COLUMNS:
                post[name] = cell
        if "meta" in post:  # a meta column holding a JSON object is the map itself, not a string
            with contextlib.suppress(DecodeError):
                meta = codec.loads(post["meta"])
                if isinstance(meta, dict):
                    post["meta"] = meta
        try:
            return codec.dumps(post)
        except TypeError:  # orjson refuses the surrogates of bytes that are not UTF-8: intake reports invalid_utf8
            return raw


class ParquetSource(_FileSource):
    kind, format_name, unit = "parquet", "Parquet", "posts"

    def __init__(self, path: Path) -> None:
        try:
            with pq.ParquetFile(path) as file:
                columns = tuple(file.schema_arrow.names)
                self._group_rows = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(f"{path}: not a readable Parquet file ({exc}); check that it is Parquet and "
                              "complete") from exc
        _check_columns(path, columns)
        self.columns = columns
        super().__init__(path, sum(self._group_rows))

    def iter_chunks(self, size: int, start: Cursor | None = None) -> Generator[Chunk, None, None]:
        _check_size(size)
        rows = _cursor_count(start, "rows", self.path) or 0
        # Skip whole row groups by their metadata, then slice: resuming never decodes what it skips over.
        group, skip = 0, rows
        while group < len(self._group_rows) and skip >= self._group_rows[group]:
            skip -= self._group_rows[group]
            group += 1
        if group == len(self._group_rows):
            return
        records: list[RawRecord] = []
        with pq.ParquetFile(self.path) as file:
            for batch in file.iter_batches(batch_size=size, row_groups=list(range(group, len(self._group_rows)))):
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                if skip:
                    batch, skip = batch.slice(skip), 0
                for row in batch.to_pylist():
                    rows += 1
                    records.append(RawRecord(value=_row_json(row), topic=self.label, offset=rows))
                    if len(records) == size:
                        yield Chunk(records, {"rows": rows}, rows)
                        records = []
        if records:
            yield Chunk(records, {"rows": rows}, rows)


def _row_json(row: dict[str, Any]) -> bytes:
    post = {name: value for name, value in row.items() if value is not None}
    try:
        return codec.dumps(post)
    except TypeError:  # a type JSON lacks (decimal, binary, duration): convert the rare row that has one
        return codec.dumps(_plain(post))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _check_columns(path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(f"{path}: no {' or '.join(repr(c) for c in missing)} column; posts need "
                          f"{' and '.join(REQUIRED_COLUMNS)}, the file has: "
                          f"{', '.join(repr(c) for c in columns) or 'no columns'}. Rename the columns")


def _check_size(size: int) -> None:
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")


def _cursor_count(cursor: Cursor | None, key: str, where: object) -> int | None:
    value = (cursor or {}).get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ConfigError(f"resume cursor {cursor!r} does not fit {where} ({key!r} must be a count); delete the "
                          "run's state to start over")
    return value


def _text_resume(path: Path, start: Cursor | None) -> tuple[int, int, int | None, int | None]:
    """Where a JSONL or CSV read resumes: (rows done, rows still to skip by reading, byte, line). A cursor with a
    byte offset and a line seeks there (nothing to skip, byte and line set); one without skips its rows by reading
    (no parsing, still cheap) from the start (byte and line None)."""
    rows, byte, line = (_cursor_count(start, key, path) for key in ("rows", "byte", "line"))
    _check_byte(path, byte)
    rows = rows or 0
    if byte is not None and line is not None:
        return rows, 0, byte, line
    return rows, rows, None, None


def _check_byte(path: Path, byte: int | None) -> None:
    if byte is not None and byte > path.stat().st_size:
        raise ConfigError(f"{path}: the resume cursor points past the end of the file (byte {byte}); the file "
                          "changed since the run started: delete the run's state to start over")


def _human_bytes(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    scaled = float(size)
    for unit in ("kB", "MB", "GB"):
        scaled /= 1000
        if scaled < 1000:
            return f"{scaled:.1f} {unit}"
    return f"{scaled / 1000:.1f} TB"


# -- topic ranges ---------------------------------------------------------------------------------------------


Message: TypeAlias = ConsumerRecord[bytes, bytes]


async def open_topic_source(settings: Settings, topic: str, *, from_offset: int | None = None,
                            from_time: datetime | None = None) -> PostSource:
    """A range of ``topic``: every partition from ``from_offset`` (clamped to the log start), or from the first
    record at or after ``from_time`` (naive = UTC), or from the log start; up to the ends it has now."""
    if from_offset is not None and from_time is not None:
        raise ConfigError("give a topic range a start offset or a start time, not both")
    if from_offset is not None and from_offset < 0:
        raise ConfigError(f"start offset {from_offset} is negative; offsets start at 0")
    consumer = make_consumer(settings, group_id=None, auto_offset_reset="none")
    await start_client(consumer, settings, "batch topic reader")
    try:
        with broker_errors(f"reading the range of topic {topic}", settings.bootstrap):
            return await TopicSource.open(consumer, settings, topic, from_offset, from_time)
    except BaseException:
        await consumer.stop()
        raise


class TopicSource:
    """A fixed range of a topic, read with manual assignment. Build with :func:`open_topic_source`."""

    unit = "posts"

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings, topic: str, starts: dict[int, int],
                 ends: dict[int, int], identity: dict[str, Any], start_text: str) -> None:
        self._consumer = consumer
        self._settings = settings
        self.topic = topic
        self.starts = starts
        self.ends = ends
        self.identity = identity
        self.total_units: int | None = _count(starts, ends)
        spans = " ".join(f"[{starts[p]}..{ends[p]})" for p in sorted(ends))
        self.description = (f"topic {topic} {spans} over {len(ends)} partition{'s' if len(ends) != 1 else ''} "
                            f"({self.total_units} records, {start_text})")
        self._closed = False

    @classmethod
    async def open(cls, consumer: AIOKafkaConsumer, settings: Settings, topic: str, from_offset: int | None,
                   from_time: datetime | None) -> TopicSource:
        await consumer.topics()  # refreshes the metadata
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ConfigError(f"topic {topic!r} does not exist on {settings.bootstrap}; check the topic name and "
                              "MODCASCADE_KAFKA_BOOTSTRAP (is it the right cluster?)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        log_starts = {tp.partition: o for tp, o in (await consumer.beginning_offsets(tps)).items()}
        listed_ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        ends = await _high_watermarks(consumer, settings, topic, log_starts, listed_ends)
        if from_time is not None:
            at = from_time.replace(tzinfo=UTC) if from_time.tzinfo is None else from_time.astimezone(UTC)
            starts = await _starts_at_time(consumer, settings, topic, at, log_starts, ends)
            start_text = f"from {at.isoformat().replace('+00:00', 'Z')}"
        else:
            starts = {p: min(max(from_offset or 0, log_starts[p]), ends[p]) for p in ends}
            start_text = f"from offset {from_offset}" if from_offset is not None else "from the log start"
        identity = {"kind": "topic", "topic": topic, "partitions": len(tps), "from_offset": from_offset,
                    "from_time": None if from_time is None else start_text.removeprefix("from ")}
        return cls(consumer, settings, topic, starts, ends, identity, start_text)

    async def chunks(self, size: int, start: Cursor | None = None) -> AsyncIterator[Chunk]:
        _check_size(size)
        # A resumed range keeps the range of the run that began it (carried in the cursor), not today's ends.
        ends = _partition_map(start, "ends", self.topic) or self.ends
        cursor_starts = _partition_map(start, "starts", self.topic)
        starts = {p: cursor_starts.get(p, self.starts.get(p, ends[p])) for p in ends}
        cursor_offsets = _partition_map(start, "offsets", self.topic)
        offsets = {p: min(max(cursor_offsets.get(p, starts[p]), starts[p]), ends[p]) for p in ends}
        self.total_units = _count(starts, ends)
        reader = _RangeReader(self._consumer, self._settings, self.topic, offsets, ends)
        while not reader.done:
            batch: list[Message] = []
            while len(batch) < size and not reader.done:
                with _reading(self._settings, self.topic):
                    batch.extend(await reader.read(size - len(batch)))
            if batch:
                cursor = {"offsets": _as_json(reader.positions), "starts": _as_json(starts), "ends": _as_json(ends)}
                yield Chunk([_raw_record(m) for m in batch], cursor, _count(starts, reader.positions))

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._consumer.stop()


class _RangeReader:
    """Reads partitions of one topic from ``positions`` up to (not including) ``ends``, at most ``max_records`` a
    call; ``positions`` always holds the next offset of each partition after what was returned."""

    def __init__(self, consumer: AIOKafkaConsumer, settings: Settings, topic: str, positions: dict[int, int],
                 ends: dict[int, int]) -> None:
        self._consumer = consumer
        self._topic = topic
        self.positions = dict(positions)
        self.ends = ends
        self._active = {p for p, o in positions.items() if o < ends[p]}
        # Long enough for many empty fetches in a row (each waits up to fetch_max_wait_ms): the broker's answer
        # that nothing more is there, not a slow fetch.
        self._idle_s = max(2.0, 20 * settings.kafka.fetch_max_wait_ms / 1000)
        self._silent_s = self._idle_s + settings.kafka.request_timeout_ms / 1000
        self._bootstrap = settings.bootstrap
        if self._active:
            consumer.assign([TopicPartition(topic, p) for p in sorted(self._active)])
            for p in self._active:
                consumer.seek(TopicPartition(topic, p), positions[p])

    @property
    def done(self) -> bool:
        return not self._active

    def stop(self, partition: int) -> None:
        """Read nothing more from ``partition``."""
        if partition in self._active:
            self._active.discard(partition)
            self._consumer.pause(TopicPartition(self._topic, partition))

    async def read(self, max_records: int) -> list[Message]:
        idle_since, idle_since_ms = time.monotonic(), int(time.time() * 1000)
        while self._active:
            fetched = await self._consumer.getmany(timeout_ms=200, max_records=max_records)
            out: list[Message] = []
            for tp, messages in fetched.items():
                if tp.partition not in self._active:
                    continue
                end = self.ends[tp.partition]
                out.extend(m for m in messages if m.offset < end)  # later records were produced after the open
                position = await self._consumer.position(tp)  # past control records too, not just the last record
                self.positions[tp.partition] = min(position, end)
                if position >= end:
                    self.stop(tp.partition)
            if out:
                return out
            if fetched:
                idle_since, idle_since_ms = time.monotonic(), int(time.time() * 1000)
            elif time.monotonic() - idle_since > self._idle_s:
                if self._end_idle_partitions(idle_since_ms):
                    idle_since, idle_since_ms = time.monotonic(), int(time.time() * 1000)
                elif time.monotonic() - idle_since > self._silent_s:
                    raise BrokerError(f"topic {self._topic}: {self._bootstrap} has not answered fetches for "
                                      f"partition(s) {sorted(self._active)} for {self._silent_s:.0f} s; is it "
                                      "overloaded, or the partition leader unavailable?")
        return []

    def _end_idle_partitions(self, idle_since_ms: int) -> bool:
        """End the partitions the broker answered for, without records, since ``idle_since_ms``: nothing is left
        up to their end (the offsets there are no records: compacted away, transaction markers). False if none."""
        ended = False
        for partition in sorted(self._active):
            tp = TopicPartition(self._topic, partition)
            answered = self._consumer.last_poll_timestamp(tp)
            if answered is not None and answered >= idle_since_ms:
                log.warning("topic %s partition %d: no records from offset %d up to the range end %d (high "
                            "watermark %s); the partition is done", self._topic, partition,
                            self.positions[partition], self.ends[partition], self._consumer.highwater(tp))
                self.positions[partition] = self.ends[partition]
                self.stop(partition)
                ended = True
        return ended


async def _high_watermarks(consumer: AIOKafkaConsumer, settings: Settings, topic: str, log_starts: dict[int, int],
                           listed_ends: dict[int, int]) -> dict[int, int]:
    """Each partition's end, from the high watermark of a fetch (tansu under-reports ListOffsets(latest))."""
    tps = {p: TopicPartition(topic, p) for p in listed_ends}
    consumer.assign(list(tps.values()))
    for p, tp in tps.items():
        consumer.seek(tp, max(listed_ends[p] - 1, log_starts[p]))  # fetch little: the last batch at most
    ends: dict[int, int] = {}
    try:
        async with asyncio.timeout(settings.kafka.request_timeout_ms / 1000):
            while len(ends) < len(tps):
                await consumer.getmany(timeout_ms=100, max_records=1)
                for p, tp in tps.items():
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        ends[p] = max(highwater, listed_ends[p])
    except TimeoutError as exc:
        missing = sorted(set(tps) - set(ends))
        raise BrokerError(f"topic {topic}: no fetch answer for partition(s) {missing} from {settings.bootstrap} "
                          f"within {settings.kafka.request_timeout_ms} ms; is the broker overloaded?") from exc
    return ends


async def _starts_at_time(consumer: AIOKafkaConsumer, settings: Settings, topic: str, at: datetime,
                          log_starts: dict[int, int], ends: dict[int, int]) -> dict[int, int]:
    """The first offset at or after ``at`` per partition (its end when there is none): the broker's answer,
    checked against the records around it, else found by scanning (tansu ignores the timestamp)."""
    at_ms = -(-(at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))  # ceiling: ms timestamps
    answers = await consumer.offsets_for_times({TopicPartition(topic, p): at_ms for p in ends})
    candidates = {tp.partition: min(max(a.offset, log_starts[tp.partition]), ends[tp.partition])
                  if a is not None else ends[tp.partition] for tp, a in answers.items()}
    # Check: the record before the candidate is older than ``at``, the first one from it is not.
    around = {p: max(c - 1, log_starts[p]) for p, c in candidates.items()}
    reader = _RangeReader(consumer, settings, topic, around, {p: min(c + 1, ends[p]) for p, c in candidates.items()})
    seen: dict[int, list[Message]] = {p: [] for p in ends}
    while not reader.done:
        with _reading(settings, topic):
            for message in await reader.read(2 * len(ends)):
                seen[message.partition].append(message)
    wrong = {p for p, c in candidates.items() if not _is_first_at(seen[p], c, at_ms, log_starts[p], ends[p])}
    starts = {p: c for p, c in candidates.items() if p not in wrong}
    if wrong:
        log.info("topic %s: the broker's offsets for %s are wrong for partition(s) %s; scanning for them",
                 topic, at.isoformat(), sorted(wrong))
        scan = _RangeReader(consumer, settings, topic, {p: log_starts[p] for p in wrong}, ends)
        while not scan.done:
            with _reading(settings, topic):
                for message in await scan.read(10_000):
                    if message.partition not in starts and message.timestamp >= at_ms:
                        starts[message.partition] = message.offset
                        scan.stop(message.partition)
        starts.update({p: ends[p] for p in wrong if p not in starts})
    return starts


def _is_first_at(messages: list[Message], candidate: int, at_ms: int, log_start: int, end: int) -> bool:
    before = [m for m in messages if m.offset < candidate]
    after = [m for m in messages if m.offset >= candidate]
    if before and before[-1].timestamp >= at_ms:
        return False
    if candidate < end and (not after or after[0].timestamp < at_ms):
        return False
    # A candidate at the end claims that no record is that new: then the last record must be older.
    return not (candidate == end and candidate > log_start and not before)


@contextlib.contextmanager
def _reading(settings: Settings, topic: str) -> Iterator[None]:
    try:
        with broker_errors(f"reading topic {topic}", settings.bootstrap):
            yield
    except BrokerError as exc:
        if isinstance(exc.__cause__, OffsetOutOfRangeError):
            raise BrokerError(f"topic {topic}: records of the range are no longer on the broker ({exc.__cause__}): "
                              "deleted by retention before they were read, or the topic was recreated; start the "
                              "range again from a later offset or time") from exc.__cause__
        raise


def _raw_record(message: Message) -> RawRecord:
    return RawRecord(value=message.value, key=message.key, topic=message.topic, partition=message.partition,
                     offset=message.offset, timestamp_ms=message.timestamp)


def _count(starts: dict[int, int], positions: dict[int, int]) -> int:
    return sum(max(positions[p] - starts[p], 0) for p in positions if p in starts)


def _as_json(offsets: dict[int, int]) -> dict[str, int]:
    return {str(p): o for p, o in sorted(offsets.items())}


def _partition_map(cursor: Cursor | None, key: str, topic: str) -> dict[int, int]:
    value = (cursor or {}).get(key, {})
    try:
        parsed = {int(p): o for p, o in value.items()}
    except (AttributeError, TypeError, ValueError):
        parsed = None
    if parsed is None or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in parsed.values()):
        raise ConfigError(f"resume cursor {cursor!r} does not fit topic {topic} ({key!r} must map partitions to "
                          "offsets); delete the run's state to start over")
    return parsed


__all__ = [
    "CSV_SUFFIXES", "JSONL_SUFFIXES", "PARQUET_SUFFIXES", "REQUIRED_COLUMNS", "Chunk", "CsvSource", "Cursor",
    "JsonlSource", "ParquetSource", "PostSource", "TopicSource", "open_file_source", "open_topic_source",
]
