"""``modcascade backtest``: labelled history through the cascade, measured; a second policy beside it; ``--loop``.

    history (time order) ─► windows ─► replay (ClassifyStage + AdjudicationStage) per window ─► checkpoint
        ─► summaries (escalation, kept accuracy, per-category P/R, macro-F1 cascade and small model, cost)
        ─► with --compare: the same posts under the second policy (scores reused) ─► diff.jsonl
    --loop: :mod:`pipeline.backtest.loop`

Outputs in ``--out``: ``report.json``, ``report.md``, ``diff.jsonl`` (with ``--compare``), the checkpoint files.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline import codec
from pipeline.backends import Classifier
from pipeline.backtest.checkpoint import RunState, write_atomic
from pipeline.backtest.diff import changes, transitions
from pipeline.backtest.history import History, read_history
from pipeline.backtest.memo import MemoClassifier
from pipeline.backtest.metrics import Summary, summarize, summary_markdown
from pipeline.backtest.outcome import HistoryPost, PostOutcome
from pipeline.backtest.replay import Timings, replay
from pipeline.backtest.stages import AdjudicatorKind, build_stages, check_frontier, lift_budget
from pipeline.backtest.windows import split_windows
from pipeline.components import build_classifier
from pipeline.policy import Policy, load_policy
from pipeline.settings import Settings

DEFAULT_WINDOW = 2000


@dataclass(frozen=True, slots=True)
class LoopOptions:
    rounds: int = 4
    seed_labels: int = 200
    golden: int = 300
    epochs: int = 2
    mixing: str = "cap"
    cap_share: float = 0.8
    reference: str = "last"
    base_model: Path | None = None
    max_length: int | None = None


@dataclass(frozen=True, slots=True)
class BacktestCommand:
    data: Path
    out: Path
    policy: Path | None = None
    model: Path | None = None
    compare: Path | None = None
    adjudicator: AdjudicatorKind = "frontier"
    backend: str | None = None
    window_size: int = DEFAULT_WINDOW
    chunk: int = 512
    live_budget: bool = False
    progress: bool = True
    overwrite: bool = False
    loop: LoopOptions | None = None


def posts_bar(console: Console, *, enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("posts"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not enabled, transient=False)


def load_policies(settings: Settings, command: BacktestCommand) -> tuple[Policy, Policy | None]:
    def one(path: Path) -> Policy:
        policy = load_policy(path)
        return policy if command.live_budget else lift_budget(policy)

    return one(command.policy or settings.policy_path), one(command.compare) if command.compare else None


async def run_backtest_command(console: Console, settings: Settings, command: BacktestCommand) -> dict[str, Any]:
    history = await read_history(command.data)
    policy, other = load_policies(settings, command)
    for pol in (policy, other):
        if pol is not None:
            check_frontier(settings, pol, command.adjudicator)
    if command.loop is not None:
        from pipeline.backtest.loop import run_loop

        return await run_loop(console, settings, command, history, policy)
    state = RunState(command.out)
    model_dir = command.model or settings.model.dir
    identity = {"data": history.identity, "policy": policy.version, "compare": other.version if other else None,
                "model": str(Path(model_dir).resolve()), "adjudicator": command.adjudicator,
                "window_size": command.window_size, "live_budget": command.live_budget}
    resumed = state.begin(identity, overwrite=command.overwrite)
    if resumed:
        console.print(f"resuming the backtest in {command.out}")
    posts = history.posts
    windows = split_windows(len(posts), size=command.window_size)
    classifier: Classifier | None = None
    timings: dict[str, Timings] = {}
    outcomes: dict[str, list[PostOutcome]] = {}
    started = time.perf_counter()
    try:
        runs = [("policy", policy)] + ([("compare", other)] if other is not None else [])
        for tag, pol in runs:
            timings[tag] = Timings()
            found: list[PostOutcome] = []
            todo = [i for i, _ in enumerate(windows) if state.window(tag, i) is None]
            if todo and classifier is None:
                classifier = MemoClassifier(build_classifier(settings, backend=command.backend, model_dir=model_dir,
                                                             policy=policy))
            stages = build_stages(settings, pol, classifier, command.adjudicator) if todo and classifier else None
            with posts_bar(console, enabled=command.progress) as bar:
                task = bar.add_task(f"{tag} {pol.name}", total=len(posts))
                for i, window in enumerate(windows):
                    done = state.window(tag, i)
                    if done is None:
                        assert stages is not None
                        part = posts[window.start:window.stop]
                        stages.know(part)
                        done = await replay(part, stages.classify, stages.adjudicate, chunk=command.chunk,
                                            timings=timings[tag], on_chunk=partial(bar.advance, task))
                        state.save_window(tag, i, done)
                    else:
                        bar.advance(task, len(window))
                    found.extend(done)
            outcomes[tag] = found
    finally:
        if classifier is not None:
            await classifier.aclose()
    seconds = time.perf_counter() - started
    report = build_report(command, history, policy, other, outcomes, timings, seconds)
    write_outputs(command.out, report, history.posts, outcomes)
    console.print(report_markdown(report), markup=False, highlight=False, soft_wrap=True)
    return report


def summary_for(policy: Policy, found: Sequence[PostOutcome], kind: AdjudicatorKind) -> Summary:
    labels = (policy.taxonomy.safe, *policy.taxonomy.categories)
    return summarize(found, labels=labels, safe=policy.taxonomy.safe,
                     frontier_usd_per_post=policy.prices.est_frontier_usd_per_post,
                     labels_stood_in=kind == "labels")


def build_report(command: BacktestCommand, history: History, policy: Policy, other: Policy | None,
                 outcomes: dict[str, list[PostOutcome]], timings: dict[str, Timings], seconds: float
                 ) -> dict[str, Any]:
    report: dict[str, Any] = {
        "data": str(command.data), "posts": len(history.posts), "unreadable": history.unreadable,
        "order": "created_at" if history.time_ordered else "file order (not every post has created_at)",
        "adjudicator": command.adjudicator,
        "budget": "live (metered on the wall clock)" if command.live_budget else "lifted (see docs/backtest.md)",
        "seconds": round(seconds, 2),
        "posts_per_s": round(len(history.posts) / seconds, 1) if seconds else None,
        "runs": {},
    }
    for tag, pol in [("policy", policy), ("compare", other)]:
        if pol is None:
            continue
        t = timings.get(tag, Timings())
        report["runs"][tag] = {"policy": pol.name, "policy_version": pol.version,
                               "seconds": {"classify": round(t.classify_s, 2), "adjudicate": round(t.adjudicate_s, 2)},
                               **summary_for(pol, outcomes[tag], command.adjudicator).to_json()}
    if other is not None:
        found = changes(outcomes["policy"], outcomes["compare"], {})
        report["diff"] = {"changed": len(found), "transitions": transitions(found), "file": "diff.jsonl"}
    return report


def write_outputs(out: Path, report: dict[str, Any], posts: Sequence[HistoryPost],
                  outcomes: dict[str, list[PostOutcome]]) -> None:
    if "compare" in outcomes:
        texts = {p.id: p.text for p in posts}
        found = changes(outcomes["policy"], outcomes["compare"], texts)
        write_atomic(out / "diff.jsonl", b"".join(codec.dumps(c.to_json()) + b"\n" for c in found))
    write_atomic(out / "report.json", codec.dumps_pretty(report))
    write_atomic(out / "report.md", report_markdown(report).encode())


def report_markdown(report: dict[str, Any]) -> str:
    lines = [f"## Backtest of {report['data']}", "",
             f"{report['posts']:,} posts in {report['order']}; adjudicator: {report['adjudicator']}; escalation "
             f"budget {report['budget']}; {report['seconds']:.1f} s ({report['posts_per_s']} posts/s)", ""]
    for tag, run in report["runs"].items():
        summary = _summary_from_json(run)
        lines.append(summary_markdown(f"{tag}: {run['policy']} {run['policy_version']}", summary))
    if "diff" in report:
        d = report["diff"]
        moves = ", ".join(f"{k}: {v}" for k, v in d["transitions"].items()) or "none"
        lines.append(f"### Diff\n\n{d['changed']:,} posts change decision ({moves}); post by post in {d['file']}\n")
    return "\n".join(lines)


def _summary_from_json(run: dict[str, Any]) -> Summary:
    from pipeline.backtest.metrics import ClassQuality, Cost, Quality

    def q(value: dict[str, Any]) -> Quality:
        return Quality(value["macro_f1"], value["accuracy"],
                       {k: ClassQuality(**v) for k, v in value["per_class"].items()})

    cost = {k: v for k, v in run["cost"].items() if k != "share_of_all_frontier"}
    return Summary(posts=run["posts"], dead_letters=run["dead_letters"], escalated=run["escalated"],
                   audited=run["audited"], kept=run["kept"], escalation_rate=run["escalation_rate"],
                   kept_accuracy=run["kept_accuracy"], cascade=q(run["cascade"]), small_model=q(run["small_model"]),
                   cost=Cost(**cost), decisions=run["decisions"], routes=run["routes"])
