"""Hypothesis settings for the fuzz tests.

Two profiles, chosen with ``HYPOTHESIS_PROFILE``:

- ``bounded`` (the default, what ``make test`` runs): few examples per property, no example database, so the
  whole folder stays within seconds on a shared two-core machine and leaves nothing behind.
- ``long`` (``make fuzz``): many examples per property; failing examples are kept in
  ``.pytest_cache/hypothesis/examples`` (ignored by git) and replayed first on the next run.

Hypothesis' own caches go under ``.pytest_cache/hypothesis`` too, not into a ``.hypothesis`` folder in the tree.

Deadlines are off in both: timings on a shared machine are noise, and a slow example is not a wrong one. The
tests are ``unit`` tests (pure), but with their own per-test timeout, sized for the profile, instead of the
unit tier's 10 s.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

_HOME = Path(__file__).resolve().parents[2] / ".pytest_cache" / "hypothesis"
set_hypothesis_home_dir(_HOME)

settings.register_profile(
    "bounded",
    max_examples=60,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=2_000,
    deadline=None,
    database=DirectoryBasedExampleDatabase(_HOME / "examples"),
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "bounded")
settings.load_profile(PROFILE)
TIMEOUT_S = {"bounded": 120}.get(PROFILE, 3600)


@pytest.hookimpl(tryfirst=True)  # before tests/conftest.py gives unit tests their 10 s
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUT_S))
