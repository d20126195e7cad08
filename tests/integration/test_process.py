"""The managed-subprocess helper on a small Python child: readiness by line and by predicate, an early exit,
SIGTERM then SIGKILL after the grace period, the whole process group, the log file."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from pipeline.process import ManagedProcess, Readiness
from tests.support.processes import assert_no_new_children, child_pids

pytestmark = pytest.mark.tools

READY_THEN_WAIT = "import time; print('starting'); print('ready on 1234', flush=True); time.sleep(60)"
IGNORES_SIGTERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                   "time.sleep(60)")
WITH_GRANDCHILD = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
                   "time.sleep(60)']); print('grandchild', child.pid, flush=True); time.sleep(60)")


def python(code: str, log: Path, **options: object) -> ManagedProcess:
    return ManagedProcess([sys.executable, "-c", code], log_path=log, **options)  # type: ignore[arg-type]


def test_it_waits_for_a_line_and_stops_with_sigterm(tmp_path: Path) -> None:
    before = child_pids()
    with python(READY_THEN_WAIT, tmp_path / "logs" / "child.log") as process:
        assert process.wait_for_line(r"^ready on \d+", timeout_s=10) is Readiness.READY
        assert process.running and process.pid is not None
        assert process.log_tail(1) == "ready on 1234"
    assert not process.running
    assert process.returncode == -15  # SIGTERM ended it
    assert process.stop() == -15  # again: nothing to do, same answer
    assert_no_new_children(before)


def test_an_exit_before_ready_is_reported_with_its_code(tmp_path: Path) -> None:
    process = python("import sys; print('bad config'); sys.exit(3)", tmp_path / "child.log").start()
    try:
        assert process.wait_for_line("^ready", timeout_s=10) is Readiness.EXITED
        assert process.returncode == 3
        assert "bad config" in process.log_tail()
    finally:
        process.stop()


def test_a_predicate_that_never_holds_times_out(tmp_path: Path) -> None:
    with python(READY_THEN_WAIT, tmp_path / "child.log") as process:
        started = time.monotonic()
        assert process.wait_ready(lambda: False, timeout_s=0.5, poll_s=0.05) is Readiness.TIMED_OUT
        assert 0.5 <= time.monotonic() - started < 5
        assert process.running


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    process = python(IGNORES_SIGTERM, tmp_path / "child.log", grace_s=0.5).start()
    assert process.wait_for_line("^ready", timeout_s=10) is Readiness.READY
    started = time.monotonic()
    assert process.stop() == -9
    assert 0.5 <= time.monotonic() - started < 5


def test_stop_reaches_the_childs_own_children(tmp_path: Path) -> None:
    process = python(WITH_GRANDCHILD, tmp_path / "child.log").start()
    try:
        assert process.wait_for_line(r"^grandchild \d+", timeout_s=10) is Readiness.READY
        grandchild = int(process.log_tail(1).split()[1])
    finally:
        process.stop()
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the grandchild outlived stop()"


def test_the_log_is_appended_to_when_asked(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("earlier run\n")
    process = python("print('second run')", log, append_log=True).start()
    assert process.wait(timeout_s=10) == 0
    process.stop()
    assert log.read_text().splitlines() == ["earlier run", "second run"]


def test_a_command_that_cannot_run_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        ManagedProcess([str(tmp_path / "no-such-binary")], log_path=tmp_path / "x.log").start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by its new parent yet) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
