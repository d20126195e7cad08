"""Batch file sources and sinks: every format read whole, in chunks and resumed from every cursor (nothing twice,
nothing lost), bad input handed on byte-exact for intake to dead-letter, memory flat on a large file; sinks
throw away what came after the mark they resume from, and the Parquet sink's parts merge into exactly the
verdicts appended."""

from __future__ import annotations

import csv
import io
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import codec
from pipeline.batch.io import (
    VERDICT_SCHEMA,
    Chunk,
    Cursor,
    ParquetVerdictSink,
    PostSource,
    open_file_source,
    open_sink,
    read_verdicts,
)
from pipeline.errors import ConfigError
from pipeline.intake import RawRecord, read_post
from pipeline.records import DeadLetter, Post, Verdict, verdict_id
from tests.support.samples import T0, sample_records


def chunks(source: PostSource, size: int, start: Cursor | None = None) -> list[Chunk]:
    return list(source.iter_chunks(size, start))  # type: ignore[attr-defined]


def flat(parts: list[Chunk]) -> list[RawRecord]:
    return [r for c in parts for r in c.records]


def check_resumes(source: PostSource, size: int, *, plain_rows: bool = True) -> list[RawRecord]:
    """Read whole; then resume from every chunk's cursor (and from every bare row count): exactly the rest."""
    parts = chunks(source, size)
    everything = flat(parts)
    assert all(len(c.records) == size for c in parts[:-1]) and 0 < len(parts[-1].records) <= size
    assert [c.cursor["rows"] for c in parts] == [min((i + 1) * size, len(everything)) for i in range(len(parts))]
    done = [c.done_units for c in parts]
    assert done == sorted(done) and done[-1] == source.total_units
    for i, chunk in enumerate(parts):
        rest = flat(chunks(source, size, chunk.cursor))
        assert rest == everything[(i + 1) * size:], f"resume after chunk {i}"
    if plain_rows:
        for n in range(len(everything) + 2):
            assert flat(chunks(source, size, {"rows": n})) == everything[n:], f"resume at {n} rows"
    return everything


def post_of(raw: RawRecord) -> Post:
    out = read_post(raw, stage="test", max_text_bytes=1_000_000)
    assert isinstance(out, Post), out
    return out


# -- JSONL ------------------------------------------------------------------------------------------------------

JSONL_LINES = [
    b'{"id": "p1", "text": "hello"}',
    b"",
    b'{"id": 2, "text": "numeric id", "lang": "en", "extra": {"a": 1}}',
    b"   ",
    b"not json at all",
    b'{"id": "p4", "text": "caf\xc3\xa9 \xf0\x9f\x8e\x89"}',
    b"\xff\xfe not utf-8",
    b'{"id": "p6", "text": "crlf line"}\r',
    b'{"id": "p7", "text": "trailing spaces kept"}  ',
    b"",
    b'{"id": "p8", "text": "last line"}',
    b"",
    b"  ",
]


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"\n".join(JSONL_LINES))
    return path


def test_jsonl_passes_every_non_blank_line_on_byte_exact_with_its_line_number(jsonl: Path) -> None:
    source = open_file_source(jsonl)
    records = flat(chunks(source, 100))
    expected = [(line.removesuffix(b"\r"), n) for n, line in enumerate(JSONL_LINES, start=1) if line.strip()]
    assert [(r.value, r.offset) for r in records] == expected
    assert {r.topic for r in records} == {"file:posts.jsonl"}
    assert (source.unit, source.total_units) == ("B", jsonl.stat().st_size)
    assert source.description == f"posts.jsonl (JSONL, {jsonl.stat().st_size} B)"
    assert source.identity["path"] == str(jsonl.resolve()) and source.identity["size"] == jsonl.stat().st_size
    # intake decodes the good ones and dead-letters the bad ones with their line numbers and bytes
    outs = [read_post(r, stage="batch.intake", max_text_bytes=1000) for r in records]
    bad = [o for o in outs if isinstance(o, DeadLetter)]
    assert [(d.source_offset, d.reason, d.original_bytes()) for d in bad] == [
        (5, "invalid_json", b"not json at all"), (7, "invalid_utf8", b"\xff\xfe not utf-8")]
    assert [o.id for o in outs if isinstance(o, Post)] == ["p1", "2", "p4", "p6", "p7", "p8"]


def test_jsonl_last_line_without_newline_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "posts.ndjson"
    path.write_bytes(b'{"a": 1}\r\n\r\n{"b": 2}')
    chunk, = chunks(open_file_source(path), 5)
    assert [(r.value, r.offset) for r in chunk.records] == [(b'{"a": 1}', 1), (b'{"b": 2}', 3)]
    assert chunk.cursor == {"rows": 2, "byte": path.stat().st_size, "line": 3}


@pytest.mark.parametrize("size", [1, 2, 3, 8, 100])
def test_jsonl_resumes_from_every_cursor(jsonl: Path, size: int) -> None:
    assert len(check_resumes(open_file_source(jsonl), size)) == 8


def test_jsonl_cursor_seeks_instead_of_rereading(jsonl: Path) -> None:
    first = chunks(open_file_source(jsonl), 3)[0]
    assert first.cursor == {"rows": 3, "byte": first.done_units, "line": 5}
    assert jsonl.read_bytes()[first.done_units:].startswith(b'{"id": "p4"')


async def test_chunks_are_read_off_the_event_loop_and_can_be_abandoned(jsonl: Path) -> None:
    source = open_file_source(jsonl)
    got = [c async for c in source.chunks(3, None)]
    assert [r.value for r in flat(got)] == [r.value for r in flat(chunks(source, 3))]
    stream = source.chunks(2, got[0].cursor)
    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.records == flat(got)[3:5]
    await source.aclose()


def test_a_large_jsonl_file_is_streamed_not_held(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    line = b'{"id": "post-%06d", "text": "' + b"some words of a post " * 4 + b'%06d"}\n'
    path.write_bytes(b"".join(line % (i, i) for i in range(200_000)))
    size = path.stat().st_size
    source = open_file_source(path)
    started = time.perf_counter()
    tracemalloc.start()
    try:
        count = last = 0
        for chunk in source.iter_chunks(1000):  # type: ignore[attr-defined]
            count += len(chunk.records)
            last = chunk.records[-1].offset
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    assert (count, last) == (200_000, 200_000)
    assert peak < size / 20, f"peak {peak} bytes while reading a {size}-byte file"
    assert seconds < 10


# -- CSV --------------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[list[str]], *, bom: bool = False, newline: str = "\r\n") -> Path:
    text = io.StringIO()
    csv.writer(text, lineterminator=newline).writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.getvalue().encode())
    return path


CSV_ROWS = [
    ["id", " text", "lang", "created_at", "thread", "meta"],
    ["c1", "plain", "en", "2026-11-24T12:00:00Z", "t9", ""],
    ["c2", "a, comma and a \"quote\"", "", "", "", '{"author": "u1"}'],
    ["c3", "two\nlines\r\nof text", "fr", "", "", ""],
    ["", "", "", "", "", ""],  # a blank row: skipped, not a data row
    ["c4", "x" * 200_000, "", "", "", ""],  # longer than the csv module's default field limit
    ["c5", "last", "de", "", "t1", "not json"],
    ["", "", "", "", "", ""],  # trailing blank rows: the last chunk still ends at the end of the file
    [],
]


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "posts.csv", CSV_ROWS, bom=True)


def test_csv_rows_become_posts_with_unknown_columns_in_meta(csv_path: Path) -> None:
    source = open_file_source(csv_path)
    records = flat(chunks(source, 10))
    assert [r.offset for r in records] == [1, 2, 3, 4, 5]
    assert codec.loads(records[0].value or b"") == {"id": "c1", "text": "plain", "lang": "en",
                                                    "created_at": "2026-11-24T12:00:00Z", "thread": "t9"}
    posts = [post_of(r) for r in records[:4]]
    assert posts[0] == Post(id="c1", text="plain", lang="en", created_at=T0, meta={"thread": "t9"})
    assert posts[1] == Post(id="c2", text='a, comma and a "quote"', meta={"author": "u1"})
    assert posts[2].text == "two\nlines\r\nof text" and posts[2].lang == "fr"
    assert len(posts[3].text) == 200_000
    dead = read_post(records[4], stage="batch.intake", max_text_bytes=1000)
    assert isinstance(dead, DeadLetter) and dead.reason == "invalid_record"  # meta must be a map
    assert (source.unit, source.total_units) == ("B", csv_path.stat().st_size)


@pytest.mark.parametrize("size", [1, 2, 4, 10])
def test_csv_resumes_from_every_cursor(csv_path: Path, size: int) -> None:
    assert len(check_resumes(open_file_source(csv_path), size)) == 5


def test_csv_rows_that_cannot_be_posts_are_passed_on_raw(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(b"id,text\nk1,fine\nk2,too,many,cells\nk3,caf\xe9 latin-1\nk4\n")
    records = flat(chunks(open_file_source(path), 10))
    assert [r.value for r in records[1:3]] == [b"k2,too,many,cells", b"k3,caf\xe9 latin-1"]
    outs = [read_post(r, stage="s", max_text_bytes=100) for r in records]
    assert [o.reason if isinstance(o, DeadLetter) else o.id for o in outs] == [
        "k1", "invalid_json", "invalid_utf8", "invalid_record"]  # k4: a short row has no text


@pytest.mark.parametrize("header", [["id", "body"], ["post", "text", "lang"]])
def test_csv_without_id_or_text_names_the_file_and_its_columns(tmp_path: Path, header: list[str]) -> None:
    path = write_csv(tmp_path / "bad.csv", [header, ["1", "2", "3"][: len(header)]])
    with pytest.raises(ConfigError) as info:
        open_file_source(path)
    message = str(info.value)
    assert str(path) in message and all(repr(c) in message for c in header)


def test_empty_csv_and_broken_csv_are_config_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ConfigError, match="empty CSV"):
        open_file_source(empty)
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"id,text\n1,ok\n2,\"" + b"x" * 17_000_000 + b"\n")
    with pytest.raises(ConfigError, match=r"broken\.csv: not valid CSV"):
        chunks(open_file_source(broken), 10)


# -- Parquet ----------------------------------------------------------------------------------------------------


def write_parquet(path: Path, n: int, row_group_size: int) -> Path:
    table = pa.table({
        "id": [f"q{i}" for i in range(n)],
        "text": [f"parquet post {i}" for i in range(n)],
        "created_at": pa.array([T0 + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
        "lang": [None if i % 3 else "en" for i in range(n)],
        "score": [i / 10 for i in range(n)],
    })
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize(("row_group_size", "size"), [(3, 7), (50, 7), (10, 10), (4, 1)])
def test_parquet_is_read_and_resumed_across_row_groups(tmp_path: Path, row_group_size: int, size: int) -> None:
    path = write_parquet(tmp_path / "posts.parquet", 23, row_group_size)
    source = open_file_source(path)
    assert (source.unit, source.total_units) == ("posts", 23)
    records = check_resumes(source, size)
    assert [r.offset for r in records] == list(range(1, 24))
    assert codec.loads(records[0].value or b"") == {"id": "q0", "text": "parquet post 0", "lang": "en",
                                                    "created_at": "2026-11-24T12:00:00Z", "score": 0.0}
    assert "lang" not in codec.loads(records[1].value or b"")  # null cells are dropped
    post = post_of(records[5])
    assert (post.id, post.created_at, post.meta) == ("q5", T0 + timedelta(seconds=5), {"score": 0.5})


def test_parquet_types_json_lacks_are_converted(tmp_path: Path) -> None:
    path = tmp_path / "odd.pq"
    pq.write_table(pa.table({"id": [1], "text": pa.array([b"bytes text"], pa.binary()),
                             "amount": pa.array([12], pa.decimal128(5, 2))}), path)
    assert codec.loads(flat(chunks(open_file_source(path), 5))[0].value or b"") == {
        "id": 1, "text": "bytes text", "amount": "12.00"}


def test_parquet_without_text_or_not_parquet_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "no-text.parquet"
    pq.write_table(pa.table({"id": ["a"], "body": ["b"]}), path)
    with pytest.raises(ConfigError, match=r"no 'text' column.*'id', 'body'"):
        open_file_source(path)
    fake = tmp_path / "fake.parquet"
    fake.write_text("id,text\n")
    with pytest.raises(ConfigError, match="not a readable Parquet file"):
        open_file_source(fake)


# -- opening ----------------------------------------------------------------------------------------------------


def test_unknown_extension_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "posts.txt").write_text("{}\n")
    with pytest.raises(ConfigError) as info:
        open_file_source(tmp_path / "posts.txt")
    assert "posts.txt" in str(info.value) and all(e in str(info.value) for e in (".jsonl", ".csv", ".parquet"))
    with pytest.raises(ConfigError, match="no such file"):
        open_file_source(tmp_path / "missing.jsonl")


def test_a_cursor_that_does_not_fit_is_a_config_error(jsonl: Path) -> None:
    source = open_file_source(jsonl)
    with pytest.raises(ConfigError, match="does not fit"):
        chunks(source, 5, {"rows": "three"})
    with pytest.raises(ConfigError, match="past the end of the file"):
        chunks(source, 5, {"rows": 1, "byte": 10**9, "line": 3})


# -- sinks ------------------------------------------------------------------------------------------------------


def verdicts(start: int, n: int) -> list[Verdict]:
    base = sample_records()[1]
    assert isinstance(base, Verdict)
    out = []
    for i in range(start, start + n):
        post_id = f"post-{i}"
        out.append(base.model_copy(update={
            "post_id": post_id, "verdict_id": verdict_id(post_id, base.policy_version),
            "decided_at": T0 + timedelta(microseconds=i * 1001), "category": None if i % 2 else "spam",
            "rationale": "looks like spam" if i % 3 == 0 else None, "flags": ("frontier_unavailable",) * (i % 2),
            "scores": {"safe": i / 100, "spam": 1 - i / 100}}))
    return out


def test_jsonl_sink_resume_drops_what_came_after_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "out" / "verdicts.jsonl"
    sink = open_sink(path, resume_mark=None)
    sink.append(verdicts(0, 3))
    first = sink.mark()
    assert first == path.stat().st_size
    sink.append(verdicts(3, 2))  # never checkpointed
    sink.mark()
    sink.close()
    sink = open_sink(path, resume_mark=first)
    assert path.stat().st_size == first
    sink.append(verdicts(10, 1))
    sink.finish()
    sink.close()
    assert list(read_verdicts(path)) == verdicts(0, 3) + verdicts(10, 1)
    # any record type goes to a JSONL side file, one codec line each
    records = sample_records()
    side = open_sink(tmp_path / "dead.ndjson", resume_mark=None)
    side.append(records)
    side.close()
    assert (tmp_path / "dead.ndjson").read_bytes() == b"".join(codec.encode(r) + b"\n" for r in records)


def test_jsonl_sink_new_start_truncates_and_bad_marks_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "v.jsonl"
    path.write_bytes(b"old\n" * 10)
    open_sink(path, resume_mark=None).close()
    assert path.read_bytes() == b""
    with pytest.raises(ConfigError, match="fewer than the 100"):
        open_sink(path, resume_mark=100)
    with pytest.raises(ConfigError, match="is gone"):
        open_sink(tmp_path / "gone.jsonl", resume_mark=5)
    open_sink(tmp_path / "new.jsonl", resume_mark=0).close()  # nothing was written yet: a new file


def test_parquet_schema_has_every_verdict_field() -> None:
    assert VERDICT_SCHEMA.names == list(Verdict.model_fields)
    types = {f.name: f for f in VERDICT_SCHEMA}
    assert types["scores"].type == pa.map_(pa.string(), pa.float64())
    assert types["flags"].type == pa.list_(pa.string())
    assert types["decided_at"].type == pa.timestamp("us", tz="UTC")
    assert {f.name for f in VERDICT_SCHEMA if f.nullable} == {"category", "rationale", "supersedes", "guard"}


def test_parquet_sink_parts_resume_and_finish(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.parquet"
    path.write_bytes(b"stale result of an earlier run")
    sink = open_sink(path, resume_mark=None)
    assert not path.exists()
    assert sink.mark() == 0  # nothing appended: no part
    sink.append(verdicts(0, 4))
    assert sink.mark() == 1
    sink.append(verdicts(4, 3))
    assert sink.mark() == 2
    sink.append(verdicts(7, 5))
    assert sink.mark() == 3  # written after the last checkpoint: thrown away on resume
    sink.append(verdicts(12, 1))  # not even marked
    sink.close()
    parts = tmp_path / "verdicts.parquet.parts"
    assert sorted(p.name for p in parts.iterdir()) == [f"part-00000{i}.parquet" for i in (1, 2, 3)]
    assert list(read_verdicts(path)) == verdicts(0, 12)  # unfinished: read from the parts

    sink = open_sink(path, resume_mark=2)
    assert sorted(p.name for p in parts.iterdir()) == ["part-000001.parquet", "part-000002.parquet"]
    sink.append(verdicts(20, 2))
    assert sink.mark() == 3
    sink.append(verdicts(30, 1))
    sink.finish()
    sink.close()
    assert not parts.exists()
    assert list(read_verdicts(path)) == verdicts(0, 7) + verdicts(20, 2) + verdicts(30, 1)
    assert pq.read_schema(path).remove_metadata().equals(VERDICT_SCHEMA)


def finished_sink(path: Path) -> None:
    sink = open_sink(path, resume_mark=None)
    for start in (0, 3, 5):
        sink.append(verdicts(start, 3 if start == 0 else 2))
        sink.mark()
    sink.finish()


def test_parquet_sink_finished_before_its_checkpoint_resumes_from_the_merged_file(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.pq"
    finished_sink(path)  # killed now, before the checkpoint recorded the end: it still holds mark 2
    sink = open_sink(path, resume_mark=2)
    assert not path.exists()
    sink.append(verdicts(50, 1))
    sink.finish()
    assert list(read_verdicts(path)) == verdicts(0, 5) + verdicts(50, 1)
    # killed after finish with the final checkpoint in place (mark 3): finishing again gives the same file
    finished_sink(path)
    sink = open_sink(path, resume_mark=3)
    sink.finish()
    assert list(read_verdicts(path)) == verdicts(0, 7)


def test_parquet_sink_killed_while_removing_its_parts_resumes_from_the_parts(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.parquet"
    parts = tmp_path / "verdicts.parquet.parts"
    sink = open_sink(path, resume_mark=None)
    for start in (0, 3, 5):
        sink.append(verdicts(start, 3 if start == 0 else 2))
        sink.mark()
    path.write_bytes(b"a merged file the kill left behind")
    sink = open_sink(path, resume_mark=2)
    assert not path.exists() and len(list(parts.iterdir())) == 2
    sink.finish()
    assert list(read_verdicts(path)) == verdicts(0, 5)


def test_parquet_sink_empty_run_and_wrong_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    sink = open_sink(path, resume_mark=None)
    with pytest.raises(TypeError, match="Verdict records, not Post"):
        sink.append([Post(id="p", text="t")])
    sink.finish()
    assert list(read_verdicts(path)) == [] and pq.read_table(path).num_rows == 0
    with pytest.raises(ConfigError, match="lacks part"):
        ParquetVerdictSink(tmp_path / "other.parquet", resume_mark=2)


def test_parquet_sink_merge_makes_row_groups_of_many_parts(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    sink = open_sink(path, resume_mark=None)
    for start in range(0, 50, 10):
        sink.append(verdicts(start, 10))
        sink.mark()
    sink.finish()
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    assert [v.post_id for v in read_verdicts(path)] == [f"post-{i}" for i in range(50)]


def _times(values: Iterator[Verdict]) -> list[datetime]:
    return [v.decided_at for v in values]


def test_read_verdicts_gives_utc_times(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    sink = open_sink(path, resume_mark=None)
    sink.append(verdicts(0, 2))
    sink.finish()
    assert all(t.tzinfo is UTC for t in _times(read_verdicts(path)))
    assert _times(read_verdicts(path)) == [v.decided_at for v in verdicts(0, 2)]
