"""A throwaway PostgreSQL for tests: the review console's store runs on it as on SQLite.

``MODCASCADE_TEST_POSTGRES_URL`` (e.g. ``postgresql+psycopg://user:pass@host/db``) names a server to use; each test
then gets a database of its own on it. Otherwise a cluster is created in a temporary directory with the local
PostgreSQL binaries (Debian's ``postgresql`` package; ``make system-deps`` installs it), listening on 127.0.0.1 on a
free port with trust authentication, and removed afterwards. PostgreSQL refuses to run as root: as root, the
cluster runs as the ``postgres`` user the package creates. Without binaries (or that user) the tests that need it
are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from pipeline.process import free_port

URL_VARIABLE = "MODCASCADE_TEST_POSTGRES_URL"


class Unavailable(Exception):
    """No PostgreSQL to test against here (the message says why and how to get one)."""


def _binaries() -> Path:
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name)
        if found:
            return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if versions:
        return Path(versions[-1]).parent
    raise Unavailable(f"no PostgreSQL binaries (initdb, pg_ctl): install Debian's postgresql (`make system-deps`) "
                      f"or set {URL_VARIABLE}")


def _cluster_user_prefix() -> list[str]:
    """What runs a command as the cluster's user: nothing, or runuser as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise Unavailable("running as root without runuser: PostgreSQL cannot run as root")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no postgres user to run the cluster as") from None
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """A fresh cluster in a new temporary directory (removed afterwards), started; yields the URL of its
    ``postgres`` database. The directory sits directly in the system's temporary directory, so that the cluster's
    user can reach it also when the tests run as root (pytest's own directories are private to their user)."""
    bin_dir = _binaries()
    as_cluster_user = _cluster_user_prefix()  # checked before anything is created
    root = Path(tempfile.mkdtemp(prefix="modcascade-postgres-"))
    try:
        if as_cluster_user:
            shutil.chown(root, "postgres", "postgres")
        data, log = root / "data", root / "postgres.log"
        port = free_port("127.0.0.1")

        def run(*command: str) -> None:
            try:
                subprocess.run([*as_cluster_user, str(bin_dir / command[0]), *command[1:]], check=True,
                               capture_output=True, text=True, timeout=120)
            except subprocess.CalledProcessError as exc:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{command[0]} failed ({exc.returncode}): {exc.stderr.strip()}\n{tail}") from exc

        run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            _stop(data)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _stop(data: Path, timeout_s: float = 30.0) -> None:
    """Immediate shutdown (what ``pg_ctl -m immediate stop`` sends: SIGQUIT to the postmaster), awaited. A signal, not
    a subprocess: the cluster may be torn down after a unit-tier test, which may not start programs."""
    pid = int((data / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url`` for one test; dropped afterwards."""
    url = make_url(server_url)
    name = f"review_test_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def configured_url() -> str | None:
    return os.environ.get(URL_VARIABLE) or None
