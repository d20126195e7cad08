"""The reliability bench's account: what the complete read of every output topic says, and its report in
RELIABILITY.md. The figures are defined in :mod:`pipeline.bench.reliability`'s docstring."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import codec

if TYPE_CHECKING:
    from pipeline.bench.reliability import ChaosOptions, Inputs

RELIABILITY_MD = Path("RELIABILITY.md")


# -- results --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    at: float
    """Wall-clock time (``time.time()``) of the SIGKILL."""
    worker: str
    progress: float
    """Share of the inputs accounted for when it happened."""


@dataclass(frozen=True)
class Duplicates:
    """Records beyond the first for the same id, in one output topic."""

    total: int
    after_last_kill: int
    ids: int
    """Ids with more than one record."""


@dataclass(frozen=True)
class ReliabilityResult:
    options: ChaosOptions
    inputs: int
    valid: int
    malformed: int
    smallest_bytes: int
    largest_bytes: int
    kills: tuple[Kill, ...]
    crashes: tuple[str, ...]
    """Workers that exited on their own (exit code and the last log line), restarted like the killed ones."""
    slow_stops: tuple[str, ...]
    """Workers still running 60 s after the final SIGTERM (then killed), with their last log line."""
    elapsed_s: float
    completed: bool
    """Every input accounted for before ``stall_s`` without progress."""
    lost: tuple[str, ...]
    malformed_dead_lettered: int
    malformed_dead_lettered_once: int
    malformed_with_verdict: int
    valid_dead_lettered: int
    duplicates: Mapping[str, Duplicates]
    conflicting: int
    routes: Mapping[str, int]
    """Posts by the route of their first verdict (slm, cache, frontier, fallback)."""
    records: Mapping[str, int]
    """Records read per output topic role."""
    backend: str
    broker: str
    load_before: float = 0.0


def output_id(role: str, value: bytes) -> str | None:
    """The input key an output record stands for: a verdict's ``post_id``, a request's post id, a dead letter's
    ``original_key``, a label's ``post_id``; None when the record has none."""
    try:
        record = codec.loads(value)
    except Exception:  # not ours to judge here: a record no id can be read from counts as no output
        return None
    if not isinstance(record, dict):
        return None
    found: Any
    if role == "dead_letter":
        found = record.get("original_key")
    elif role == "adjudication":
        post = record.get("post")
        found = post.get("id") if isinstance(post, dict) else None
    else:
        found = record.get("post_id")
    return found if isinstance(found, str) else None


def ending_roles(adjudicating: bool) -> tuple[str, ...]:
    """The topics whose records end an input: final verdicts and dead letters (and adjudication requests when
    no adjudicate worker runs)."""
    return ("verdicts", "dead_letter") if adjudicating else ("verdicts", "dead_letter", "adjudication")


# -- the account ----------------------------------------------------------------------------------------------


def account(options: ChaosOptions, inputs: Inputs, read: Mapping[str, Sequence[Any]], *, kills: Sequence[Kill],
            crashes: Sequence[str], slow_stops: Sequence[str] = (), elapsed_s: float, completed: bool,
            adjudicating: bool, broker: str,
            load_before: float, backend: str) -> ReliabilityResult:
    """The exact figures from the complete read of every output topic (``read``: role → its records)."""
    last_kill_ms = max((k.at for k in kills), default=float("inf")) * 1000
    ids: dict[str, list[tuple[str | None, int]]] = {}
    decisions: dict[str, set[str]] = {}
    routes: dict[str, str] = {}
    for role, messages in read.items():
        ids[role] = [(output_id(role, m.value or b""), m.timestamp) for m in messages]
    for m in read.get("verdicts", ()):
        verdict = codec.loads(m.value or b"{}")
        if isinstance(verdict, dict) and isinstance(verdict.get("post_id"), str):
            decisions.setdefault(verdict["post_id"], set()).add(str(verdict.get("decision")))
            routes.setdefault(verdict["post_id"], str(verdict.get("route")))
    duplicates = {role: _duplicates(found, last_kill_ms) for role, found in ids.items()}
    ended: set[str] = set()
    for role in ending_roles(adjudicating):
        ended.update(key for key, _ in ids.get(role, ()) if key is not None)
    dead = Counter(key for key, _ in ids.get("dead_letter", ()) if key is not None)
    with_verdict = {key for key, _ in ids.get("verdicts", ()) if key is not None}
    return ReliabilityResult(
        options=options, inputs=len(inputs.records), valid=len(inputs.valid), malformed=len(inputs.malformed),
        smallest_bytes=inputs.smallest, largest_bytes=inputs.largest, kills=tuple(kills), crashes=tuple(crashes),
        slow_stops=tuple(slow_stops),
        elapsed_s=elapsed_s, completed=completed, lost=tuple(sorted(inputs.keys - ended)),
        malformed_dead_lettered=sum(1 for key in inputs.malformed if dead[key] >= 1),
        malformed_dead_lettered_once=sum(1 for key in inputs.malformed if dead[key] == 1),
        malformed_with_verdict=len(inputs.malformed & with_verdict),
        valid_dead_lettered=sum(1 for key in inputs.valid if dead[key] >= 1),
        duplicates=duplicates, conflicting=sum(1 for found in decisions.values() if len(found) > 1),
        routes=dict(Counter(routes.values())),
        records={role: len(messages) for role, messages in read.items()}, backend=backend, broker=broker,
        load_before=load_before)


def _duplicates(found: Sequence[tuple[str | None, int]], last_kill_ms: float) -> Duplicates:
    """Records beyond the first per id (in offset order per partition; by timestamp across them)."""
    seen: set[str] = set()
    total = after = 0
    repeated: set[str] = set()
    for key, timestamp in sorted((f for f in found if f[0] is not None), key=lambda f: f[1]):
        assert key is not None
        if key in seen:
            total += 1
            repeated.add(key)
            after += timestamp > last_kill_ms
        seen.add(key)
    return Duplicates(total, after, len(repeated))


def render_markdown(result: ReliabilityResult, *, machine: str, date: str) -> str:
    o = result.options
    last = result.kills[-1] if result.kills else None
    by_kind = Counter(k.worker.split("-")[0] for k in result.kills)
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(by_kind.items()))
    adjudication = (f"adjudicate worker on the frontier at {o.frontier_url}" if o.frontier_url
                    else "**no adjudicate worker** (no frontier URL): an adjudication request counts as a post's "
                    "outcome")
    lines = [
        f"### {date}: {result.inputs:,} records, {len(result.kills)} kills, seed {o.seed}",
        "",
        f"Machine: {machine}. Broker: {result.broker}. Classifier: {result.backend}, {o.classify_workers} classify "
        f"worker processes; {adjudication}. Load average (1 min) at the start: {result.load_before:.2f}.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| inputs: valid posts / malformed (incl. large) | {result.valid:,} / {result.malformed:,} |",
        f"| record sizes | {result.smallest_bytes:,} B to {result.largest_bytes / 2**20:.1f} MB "
        f"(large: {', '.join(f'{mb:g}' for mb in o.large_mb) or 'none'} MB) |",
        f"| SIGKILLs (by worker kind) | {len(result.kills)} of {o.kills} ({kinds or 'none'}) |",
        f"| workers that exited on their own | {len(result.crashes)} |",
        f"| workers not stopped 60 s after the final SIGTERM (then killed) | {len(result.slow_stops)} |",
        f"| all inputs accounted for | {'yes' if result.completed else '**no**'} |",
        f"| elapsed (first worker start → last input accounted for) | {result.elapsed_s:,.1f} s |",
        f"| **lost** (no final verdict and no dead letter) | **{len(result.lost):,}** |",
        f"| malformed inputs dead-lettered (at least once / exactly once) | {result.malformed_dead_lettered:,} / "
        f"{result.malformed_dead_lettered_once:,} of {result.malformed:,} |",
        f"| malformed inputs with a verdict | {result.malformed_with_verdict:,} |",
        f"| valid posts dead-lettered | {result.valid_dead_lettered:,} |",
    ]
    for role in ("verdicts", "adjudication", "dead_letter", "labels"):
        d = result.duplicates.get(role)
        if d is None:
            continue
        lines.append(f"| duplicate {role.replace('_', ' ')} records (for {d.ids:,} ids) / of them after the last "
                     f"kill | {d.total:,} / {d.after_last_kill:,} |")
    lines += [
        f"| posts whose verdicts disagree | {result.conflicting:,} |",
        f"| posts by verdict route | {', '.join(f'{r} {n:,}' for r, n in sorted(result.routes.items())) or '-'} |",
        f"| records read: {', '.join(f'{r} {n:,}' for r, n in result.records.items())} | |",
        "",
        f"Last kill at {last.progress:.0%} of the inputs accounted for." if last else "No kill happened.",
        "Method: `modcascade bench --suites reliability` (`pipeline/bench/reliability.py`, its docstring defines "
        "every figure). Duplicates are records beyond the first for the same id in one topic, counted exactly "
        "from a complete read of the topic after the workers stopped; 'after the last kill' are those whose record "
        "timestamp is later than the last SIGKILL.",
    ]
    if result.crashes:
        lines += ["", "Workers that exited on their own:", *(f"- `{c}`" for c in result.crashes[:10])]
    if result.slow_stops:
        lines += ["", "Workers still running 60 s after the final SIGTERM:", *(f"- `{c}`" for c in result.slow_stops)]
    if result.lost:
        lines += ["", f"Lost, first {min(10, len(result.lost))}: {', '.join(result.lost[:10])}"]
    return "\n".join(lines) + "\n"


def append_report(path: Path, body: str) -> None:
    """Append ``body`` to ``path`` (created with a heading), newest run last."""
    text = path.read_text() if path.exists() else (
        "# Reliability\n\nRuns of `modcascade bench --suites reliability`: the workers as separate processes on "
        "the embedded broker, SIGKILLed at random and restarted, every output topic read back completely. "
        "Each run is appended by the bench.\n")
    path.write_text(text.rstrip() + "\n\n" + body.rstrip() + "\n")
