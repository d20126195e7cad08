"""The one codec: records ⇄ JSON bytes. The only module that imports orjson.

``decode`` never lets a third-party error escape: bad bytes become a :class:`DecodeError` whose
``reason`` tag says what was wrong (``invalid_utf8``, ``invalid_json``, ``not_an_object``, ``too_deep``,
``invalid_record``, ``empty_text``, ``too_large``), ready to be put in a DeadLetter. What ``decode``
accepts can be encoded again (records travel on inside other records); when a record built in Python
cannot be, ``encode`` raises :class:`RecordError`, never orjson's error.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar, get_args

import orjson
from pydantic import BaseModel, ValidationError

from pipeline.errors import DecodeError, RecordError

R = TypeVar("R", bound=BaseModel)

_DUMP_OPTIONS = orjson.OPT_UTC_Z

MAX_DEPTH = 128
"""Deepest nesting of objects and arrays a decoded record may have. orjson writes at most 254 levels, and a
decoded post travels on nested in other records (an AdjudicationRequest), so decode keeps well below it."""


def encode(record: BaseModel) -> bytes:
    """Serialize a record to compact JSON bytes (UTC times as ``...Z``); :class:`RecordError` if JSON cannot
    carry it (ints past 64 bits, lone surrogates, nesting past orjson's limit).

    A model whose dump is its validated field values (:func:`dumps_as_fields`: every record on our topics) is
    handed to orjson as it is, its fields read straight from the instance: the same bytes as ``model_dump`` then
    ``orjson.dumps``, at a quarter of the cost (the hot path encodes one record per post; docs/decisions.md)."""
    if dumps_as_fields(type(record)):
        try:
            return orjson.dumps(record, default=_fields, option=_DUMP_OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise RecordError(f"{type(record).__name__} cannot be encoded as JSON: {exc}") from exc
    return _dumps(record.model_dump(mode="python", exclude_none=False), _DUMP_OPTIONS, type(record).__name__)


@functools.cache
def dumps_as_fields(model: type[BaseModel]) -> bool:
    """Whether ``model_dump`` of ``model`` is exactly its field values: no serializers, computed fields, aliases or
    excluded fields, and every nested model type (in its annotations) the same. Such a model can be encoded from
    its instance dict; any other goes through ``model_dump``."""
    return _plain(model, set())


def _plain(model: type[BaseModel], seen: set[type[BaseModel]]) -> bool:
    if model in seen:  # a model that nests itself: decided where the walk entered it
        return True
    seen.add(model)
    decorators = model.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers or decorators.computed_fields:
        return False
    if model.model_config.get("extra") == "allow":  # extras live outside the instance dict
        return False
    for field in model.model_fields.values():
        if field.alias is not None or field.serialization_alias is not None or field.exclude:
            return False
        if not all(_plain(nested, seen) for nested in _nested_models(field.annotation)):
            return False
    return True


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            found.append(item)
        stack.extend(get_args(item))
    return found


def _fields(value: Any) -> Any:
    # orjson's hook for what it does not know: a nested model is its fields (checked by ``dumps_as_fields``).
    if isinstance(value, BaseModel) and dumps_as_fields(type(value)):
        return value.__dict__
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python", exclude_none=False)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    """Serialize plain data (dicts, lists, numbers, strings, datetimes) to JSON bytes."""
    return _dumps(value, _DUMP_OPTIONS, "value")


def dumps_pretty(value: Any) -> bytes:
    """Serialize plain data as stable, human-diffable JSON (sorted keys, indented, trailing newline)."""
    return _dumps(value, _DUMP_OPTIONS | orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, "value") + b"\n"


def _dumps(value: Any, option: int, what: str) -> bytes:
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:
        raise RecordError(f"{what} cannot be encoded as JSON: {exc}") from exc


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
    if _brackets(data) > MAX_DEPTH and _deeper_than(obj, MAX_DEPTH):
        raise DecodeError("too_deep", f"not a valid {model.__name__}: objects and arrays are nested deeper than "
                                      f"{MAX_DEPTH} levels")
    try:
        return model.model_validate(obj, context=context)
    except ValidationError as exc:
        types = [err["type"] for err in exc.errors()]
        reason = next((t for t in types if t in _SPECIFIC_REASONS), "invalid_record")
        raise DecodeError(reason, f"not a valid {model.__name__}: {_describe(exc)}") from exc


def _brackets(data: bytes | str) -> int:
    # Cheap bound on the nesting depth (a C scan), so only suspicious records pay for the exact walk.
    if isinstance(data, bytes):
        return data.count(b"{") + data.count(b"[")
    return data.count("{") + data.count("[")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether a parsed JSON value nests more than ``limit`` objects/arrays (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


# Validation failures with their own dead-letter reason (raised as PydanticCustomError by records.py).
_SPECIFIC_REASONS = frozenset({"empty_text", "too_large"})


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<record>"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
