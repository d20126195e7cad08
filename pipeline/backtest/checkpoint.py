"""The out folder as a checkpoint: a finished window or round is one file, written atomically, so a run stopped
at any point (SIGKILL included) and started again with the same command redoes at most the window in progress.

    OUT/run.json                     what the run is (input, policies, model, options): a resume with other
                                     inputs is refused, naming what changed
    OUT/windows/<policy>/wNNNN.jsonl the outcomes of one finished window (PostOutcome per line)
    OUT/rounds/rNNNN.json            a finished round of --loop (its row, the model that decides next)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import codec
from pipeline.backtest.outcome import PostOutcome
from pipeline.errors import ConfigError


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)


class RunState:
    def __init__(self, out: Path) -> None:
        self.out = out

    def begin(self, identity: dict[str, Any], *, overwrite: bool = False) -> bool:
        """Start or resume; True when resuming. A run of other inputs in the same folder is refused."""
        marker = self.out / "run.json"
        if marker.exists() and not overwrite:
            before = codec.loads(marker.read_bytes())
            changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
            if changed:
                raise ConfigError(f"{self.out} holds a backtest of other inputs (changed: {', '.join(changed)}): "
                                  "use another --out, or --overwrite to start over")
            return True
        if overwrite and self.out.exists():
            for sub in ("windows", "rounds", "models"):
                shutil.rmtree(self.out / sub, ignore_errors=True)
        write_atomic(marker, codec.dumps_pretty(identity))
        return False

    def window_path(self, tag: str, index: int) -> Path:
        return self.out / "windows" / tag / f"w{index:04d}.jsonl"

    def window(self, tag: str, index: int) -> list[PostOutcome] | None:
        path = self.window_path(tag, index)
        if not path.exists():
            return None
        return [PostOutcome.from_json(codec.loads(line)) for line in path.read_bytes().splitlines() if line]

    def save_window(self, tag: str, index: int, outcomes: Sequence[PostOutcome]) -> None:
        write_atomic(self.window_path(tag, index), b"".join(codec.dumps(o.to_json()) + b"\n" for o in outcomes))

    def round(self, index: int) -> dict[str, Any] | None:
        path = self.out / "rounds" / f"r{index:04d}.json"
        return dict(codec.loads(path.read_bytes())) if path.exists() else None

    def save_round(self, index: int, value: dict[str, Any]) -> None:
        write_atomic(self.out / "rounds" / f"r{index:04d}.json", codec.dumps_pretty(value))
