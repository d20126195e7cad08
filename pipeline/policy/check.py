"""``modcascade policy check``: validate policy files for CI and ops, one line per problem."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from pipeline.errors import PolicyError, PolicyIssue
from pipeline.policy.load import load_policy
from pipeline.policy.model import Policy

PATTERNS = ("*.yaml", "*.yml")

Result = Policy | list[PolicyIssue]
"""The valid policy of a file, or its issues."""


def check_file(path: str | os.PathLike[str]) -> Result:
    try:
        return load_policy(path)
    except PolicyError as exc:
        return list(exc.issues)


def check_paths(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Result]]:
    """Check each file, in order. A directory stands for its ``*.yaml`` / ``*.yml`` files (sorted, not
    recursive); one without any is an issue, so CI cannot pass while checking nothing."""
    results: list[tuple[Path, Result]] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            results.append((path, check_file(path)))  # a missing file is the loader's issue, with its path
            continue
        files = sorted({f for pattern in PATTERNS for f in path.glob(pattern) if f.is_file()})
        if not files:
            results.append((path, [PolicyIssue(str(path), "", f"no {' or '.join(PATTERNS)} files in this "
                                                               "directory: name the policy files or their directory")]))
        results.extend((file, check_file(file)) for file in files)
    return results


def check_files(paths: Iterable[str | os.PathLike[str]]) -> list[PolicyIssue]:
    """Every issue of every file; an empty list means all are valid."""
    return [issue for _, result in check_paths(paths) if isinstance(result, list) for issue in result]


def run_check(paths: Iterable[str | os.PathLike[str]], out: TextIO) -> int:
    """Print one line per issue and ``OK <file> (policy <name>, version <v>)`` per valid file.

    Returns the exit code: 0 when every file is valid, 1 otherwise (also when there was nothing to check).
    """
    results = check_paths(paths)
    if not results:
        print("no policy files given: name files or directories", file=out)
        return 1
    for path, result in results:
        if isinstance(result, list):
            for issue in result:
                print(issue, file=out)
        else:
            print(f"OK {path} (policy {result.name}, version {result.version})", file=out)
    return 1 if any(isinstance(result, list) for _, result in results) else 0
