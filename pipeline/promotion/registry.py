"""Model releases and the pointer the serving side reads.

    models/releases/<version>/      one directory per promoted model (HF format + model_card.json), never modified
    models/releases/history.jsonl   every pointer change: {"action", "from", "to", "at"}, appended
    models/current -> releases/<v>  a relative symlink: ``MODCASCADE_MODEL_DIR``, read by serve-model and workers

Promotion and rollback only swap the symlink, atomically (a new link renamed over the old one), so a reader
sees the old model or the new one, never a half-copied directory. The model server loads the model when it
starts: restart or roll it to serve a new release (a Kubernetes rollout does this without downtime).

A ``models/current`` that is still a plain directory (the demo model ``make run`` trains) is adopted as a
release on the first promotion, so rollback can return to it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pipeline import codec
from pipeline.backends.base import ModelInfo
from pipeline.errors import ConfigError

HISTORY = "history.jsonl"
Action = Literal["adopt", "promote", "rollback"]


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    source: str | None
    """The version the pointer left (None: there was none)."""
    target: str
    at: str


class ModelRegistry:
    def __init__(self, releases: Path, pointer: Path) -> None:
        self.releases = releases
        self.pointer = pointer

    @property
    def current_version(self) -> str | None:
        """The version the pointer names; None when there is no current model."""
        if not (self.pointer / "config.json").exists():
            return None
        return ModelInfo.from_dir(self.pointer).version

    def history(self) -> list[Change]:
        path = self.releases / HISTORY
        if not path.exists():
            return []
        return [Change(**codec.loads(line)) for line in path.read_bytes().splitlines() if line.strip()]

    def promote(self, candidate: Path) -> Path:
        """Copy ``candidate`` into the releases (unless it is one) and point ``current`` at it."""
        self._adopt_plain_directory()
        version = ModelInfo.from_dir(candidate).version
        release = self.releases / version
        if not release.exists():
            staging = self.releases / f".{version}.incoming"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(candidate, staging, ignore=shutil.ignore_patterns("checkpoint-*"))
            staging.rename(release)
        elif release.resolve() != candidate.resolve() and ModelInfo.from_dir(release).version != version:
            raise ConfigError(f"{release} already holds a different model: remove it or retrain")
        self._point(release, "promote")
        return release

    def rollback(self) -> str:
        """Point ``current`` back at the model the last promotion replaced; returns that version."""
        current = self.current_version
        previous = next((c.source for c in reversed(self.history()) if c.action == "promote" and c.target == current),
                        None)
        if current is None or previous is None:
            raise ConfigError(f"nothing to roll back to: {self.pointer} ({current or 'no model'}) was not put there by "
                              f"a promotion (history: {self.releases / HISTORY})")
        release = self.releases / previous
        if not (release / "config.json").exists():
            raise ConfigError(f"cannot roll back to {previous}: {release} is gone")
        self._point(release, "rollback")
        return previous

    def _adopt_plain_directory(self) -> None:
        if self.pointer.is_symlink() or not self.pointer.is_dir() or self.current_version is None:
            return
        version = self.current_version
        self.releases.mkdir(parents=True, exist_ok=True)
        release = self.releases / version
        if release.exists():
            shutil.rmtree(self.pointer)
        else:
            self.pointer.rename(release)
        self._link(release)
        self._record(Change("adopt", None, version, _now()))

    def _point(self, release: Path, action: Action) -> None:
        source = self.current_version
        target = ModelInfo.from_dir(release).version
        if source == target:
            return
        self._link(release)
        self._record(Change(action, source, target, _now()))

    def _link(self, release: Path) -> None:
        if self.pointer.exists() and not self.pointer.is_symlink():
            raise ConfigError(f"{self.pointer} is a directory, not a release pointer: move it away first")
        self.pointer.parent.mkdir(parents=True, exist_ok=True)
        staging = self.pointer.with_name(f".{self.pointer.name}.new")
        staging.unlink(missing_ok=True)
        staging.symlink_to(os.path.relpath(release.resolve(), self.pointer.parent.resolve()), target_is_directory=True)
        os.replace(staging, self.pointer)  # atomic: readers see the old release or the new one

    def _record(self, change: Change) -> None:
        self.releases.mkdir(parents=True, exist_ok=True)
        with (self.releases / HISTORY).open("ab") as history:
            history.write(codec.dumps({"action": change.action, "source": change.source, "target": change.target,
                                       "at": change.at}) + b"\n")
            history.flush()
            os.fsync(history.fileno())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
