"""Process hygiene for tests that start engines and servers: nothing they spawn may outlive their shutdown."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]


def child_pids() -> set[int]:
    """Live child processes of this test process (multiprocessing's resource tracker excluded; a zombie has
    exited already, only its parent has not reaped it yet)."""
    live = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                live.add(child.pid)
        except psutil.Error:  # exited (or turned zombie) while we looked
            continue
    return live


def assert_no_new_children(before: set[int], timeout_s: float = 10.0) -> None:
    """Every child started since the ``before`` snapshot has exited (waits up to ``timeout_s``).

    Comparing with a snapshot keeps session-wide processes (the test broker, other modules' engines) out of it.
    """
    deadline = time.monotonic() + timeout_s
    while (left := child_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    described = []
    for pid in sorted(left):
        try:
            described.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:80]}")
        except psutil.NoSuchProcess:
            continue
    assert not described, f"processes outlived their shutdown: {described}"


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``modcascade worker NAME`` as a user starts it, its output appended to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker", name], env=env, stdout=sink,
                                stderr=subprocess.STDOUT, cwd=REPO)


def metric_samples(port: int, name: str, **labels: str) -> list[float]:
    """The values of the samples ``name`` with (at least) ``labels`` on the metrics endpoint at ``port`` of this
    host; none while the process does not serve yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return []
    return [float(sample.value) for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()]


def metric_sample(port: int, name: str, **labels: str) -> float | None:
    """The first of :func:`metric_samples` (None: no such sample, or not serving yet)."""
    return next(iter(metric_samples(port, name, **labels)), None)


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes appended here are killed (if still running) and reaped after the test."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
