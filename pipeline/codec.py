"""The one codec: records ⇄ JSON bytes. The only module that imports orjson.

``decode`` never lets a third-party error escape: bad bytes become a :class:`DecodeError` whose
``reason`` tag says what was wrong (``invalid_utf8``, ``invalid_json``, ``not_an_object``,
``invalid_record``, ``empty_text``, ``too_large``), ready to be put in a DeadLetter.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from pipeline.errors import DecodeError

R = TypeVar("R", bound=BaseModel)

_DUMP_OPTIONS = orjson.OPT_UTC_Z


def encode(record: BaseModel) -> bytes:
    """Serialize a record to compact JSON bytes (UTC times as ``...Z``)."""
    return orjson.dumps(record.model_dump(mode="python", exclude_none=False), option=_DUMP_OPTIONS)


def dumps(value: Any) -> bytes:
    """Serialize plain data (dicts, lists, numbers, strings, datetimes) to JSON bytes."""
    return orjson.dumps(value, option=_DUMP_OPTIONS)


def dumps_pretty(value: Any) -> bytes:
    """Serialize plain data as stable, human-diffable JSON (sorted keys, indented, trailing newline)."""
    return orjson.dumps(value, option=_DUMP_OPTIONS | orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises :class:`DecodeError` (never orjson's error)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if isinstance(data, bytes):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as utf8_exc:
                raise DecodeError("invalid_utf8", f"value is not valid UTF-8 ({utf8_exc.reason} at byte "
                                  f"{utf8_exc.start})") from exc
        raise DecodeError("invalid_json", f"value is not valid JSON: {exc}") from exc


def decode(data: bytes | str, model: type[R], *, context: dict[str, Any] | None = None) -> R:
    """Decode bytes into ``model``; raises :class:`DecodeError` with a reason tag and a readable message.

    ``context`` is passed to validators (e.g. ``{"max_text_bytes": 32768}`` for posts).
    """
    obj = loads(data)
    if not isinstance(obj, dict):
        raise DecodeError("not_an_object", f"expected a JSON object for {model.__name__}, "
                          f"got {type(obj).__name__}")
    try:
        return model.model_validate(obj, context=context)
    except ValidationError as exc:
        types = [err["type"] for err in exc.errors()]
        reason = next((t for t in types if t in _SPECIFIC_REASONS), "invalid_record")
        raise DecodeError(reason, f"not a valid {model.__name__}: {_describe(exc)}") from exc


# Validation failures with their own dead-letter reason (raised as PydanticCustomError by records.py).
_SPECIFIC_REASONS = frozenset({"empty_text", "too_large"})


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<record>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
