"""Shared hypothesis strategies: JSON-like values, junk bytes, and values that sit on the edges."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Ints on both sides of 64 bits (orjson writes only 64-bit ints) and floats including the non-finite ones.
EDGE_INTS = st.sampled_from([0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30])
NUMBERS = st.integers(-(2**63), 2**64 - 1) | EDGE_INTS | st.floats(allow_nan=True, allow_infinity=True)
FINITE_NUMBERS = st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)

JSON_SCALARS = st.none() | st.booleans() | FINITE_NUMBERS | st.text(max_size=40)


def json_values(scalars: st.SearchStrategy[Any] = JSON_SCALARS, max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Values JSON can carry: scalars in lists and string-keyed maps."""
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
        max_leaves=max_leaves,
    )


def nested(depth: int, leaf: Any = 0) -> Any:
    """A value ``depth`` containers deep, alternating maps and lists, a map outermost (built without recursion)."""
    value = leaf
    for level in range(depth):
        value = [value] if (depth - level) % 2 == 0 else {"k": value}
    return value


# Bytes that look like JSON often enough to reach the validators, and plain junk the rest of the time.
JSON_TOKENS = st.sampled_from([
    b"{", b"}", b"[", b"]", b":", b",", b'"', b"\\", b"\\u", b"\\ud800", b"\\udc00", b"null", b"true", b"1e999",
    b"-0", b"12345678901234567890123", b'"id"', b'"text"', b'"created_at"', b'"meta"', b'"schema_version"',
    b'"9999-12-31T23:59:59-01:00"', b'"0001-01-01T00:00:00+01:00"', b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00",
    b" ", b"\n",
])
JSONISH_BYTES = st.lists(JSON_TOKENS | st.binary(max_size=8), max_size=40).map(b"".join)
ANY_BYTES = st.binary(max_size=200) | JSONISH_BYTES
