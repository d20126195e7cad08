"""The labelled history, read through the batch command's file sources (JSONL, CSV, Parquet), in time order.

Each record needs ``text`` and ``label``; ``id`` (JSONL may leave it out: ``<file stem>-<line>``; CSV and Parquet
need the column, as in batch mode) and ``created_at`` (ISO 8601) are optional. When every record has a
``created_at`` the posts are replayed in that order (stable: ties keep the file order); otherwise in file order.
A line that is not a JSON object is counted as unreadable and left out (it has no label to measure against).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline import codec
from pipeline.backtest.outcome import HistoryPost
from pipeline.batch.sources.files import open_file_source
from pipeline.errors import ConfigError, DecodeError

CHUNK = 4096


@dataclass(frozen=True, slots=True)
class History:
    posts: list[HistoryPost]
    unreadable: int
    time_ordered: bool
    identity: dict[str, Any]


async def read_history(path: Path) -> History:
    source = open_file_source(path)
    rows: list[HistoryPost] = []
    unreadable = 0
    try:
        async for chunk in source.chunks(CHUNK, None):
            for raw in chunk.records:
                try:
                    value = codec.loads(raw.value or b"")
                except DecodeError:
                    unreadable += 1
                    continue
                if not isinstance(value, dict):
                    unreadable += 1
                    continue
                rows.append(_post(path, raw.offset, value))
    finally:
        await source.aclose()
    timed = bool(rows) and all(p.created_at is not None for p in rows)
    if timed:
        rows.sort(key=lambda p: p.created_at or datetime.min.replace(tzinfo=UTC))
    return History(rows, unreadable, timed, dict(source.identity))


def _post(path: Path, line: int | None, value: dict[str, Any]) -> HistoryPost:
    where = f"{path}, record {line}"
    label, text = value.get("label"), value.get("text")
    if not isinstance(label, str) or not label:
        raise ConfigError(f"{where}: no 'label': every post of a backtest's history needs its label (a category of "
                          "the policy's taxonomy, or its safe class)")
    post_id = value.get("id")
    if post_id is None or post_id == "":
        post_id = value["id"] = f"{path.stem}-{line}"
    created = value.get("created_at")
    created_at = None
    if isinstance(created, str) and created:
        try:
            created_at = datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"{where}: created_at {created!r} is not an ISO 8601 time (e.g. "
                              "2026-11-01T12:00:00Z)") from exc
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
    return HistoryPost(id=str(post_id), text=text if isinstance(text, str) else "", label=label,
                       created_at=created_at, value=codec.dumps(value))
