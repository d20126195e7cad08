"""``modcascade backtest --loop``: the learning loop replayed over time.

    seed (first N posts, labelled) ─► the starting model (or --model)      golden (next G posts): the gate's set
    for each window, in time order:
        replay the window with the current model (ClassifyStage + AdjudicationStage) ─► frontier labels
        labels so far + seed (mixing: pipeline.backtest.mixing) ─► train a candidate (pipeline.training.trainer)
        candidate vs current on the golden set (pipeline.promotion.gate) ─► the next window's model

A round's row measures the model that decided its window, trained before it saw the window. The reference is a
model trained on every label before its window (the seed and every earlier window's history labels): what full
supervision would reach. A finished round is a checkpoint file (``rounds/rNNNN.json``, its labels beside it); a
stopped loop started again with the same command resumes after the last finished round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline import codec
from pipeline.backtest.checkpoint import RunState, write_atomic
from pipeline.backtest.command import BacktestCommand, LoopOptions, posts_bar, summary_for
from pipeline.backtest.curve import RoundRow, curve_markdown, curve_png, improvement
from pipeline.backtest.history import History
from pipeline.backtest.mixing import LearnedLabel, mix_training
from pipeline.backtest.outcome import HistoryPost, PostOutcome
from pipeline.backtest.replay import Timings, replay
from pipeline.backtest.stages import build_stages
from pipeline.backtest.windows import split_windows
from pipeline.components import build_classifier
from pipeline.errors import ConfigError
from pipeline.evaluation.report import EvalReport, evaluate_model
from pipeline.evaluation.scoring import ScoringOptions
from pipeline.policy import Policy
from pipeline.promotion.command import tolerances_for
from pipeline.promotion.gate import gate
from pipeline.settings import Settings
from pipeline.training.card import write_card
from pipeline.training.config import TrainConfig, default_base_model
from pipeline.training.data import Example
from pipeline.training.trainer import train

REFERENCES = ("last", "all", "none")


def examples(posts: Sequence[HistoryPost]) -> list[Example]:
    return [Example(text=p.text, label=p.label, line=i + 1) for i, p in enumerate(posts)]


def learned_from(outcomes: Sequence[PostOutcome], texts: dict[str, str], round_: int) -> list[LearnedLabel]:
    return [LearnedLabel(o.id, texts[o.id], o.frontier_label, "escalation" if o.escalated else "audit", round_)
            for o in outcomes if o.frontier_label is not None]


async def run_loop(console: Console, settings: Settings, command: BacktestCommand, history: History,
                   policy: Policy) -> dict[str, Any]:
    options = command.loop or LoopOptions()
    if options.reference not in REFERENCES:
        raise ConfigError(f"--reference {options.reference!r}: use one of {', '.join(REFERENCES)}")
    posts = history.posts
    seed, golden = posts[:options.seed_labels], posts[options.seed_labels:options.seed_labels + options.golden]
    windows = split_windows(len(posts), start=options.seed_labels + options.golden, rounds=options.rounds)
    config = TrainConfig(base_model=options.base_model or default_base_model(), epochs=options.epochs,
                         max_length=options.max_length or settings.model.max_length, seed=0,
                         num_threads=settings.model.threads)
    scoring = ScoringOptions(max_length=config.max_length)
    state = RunState(command.out)
    identity = {"data": history.identity, "policy": policy.version, "adjudicator": command.adjudicator,
                "model": str(command.model.resolve()) if command.model else None, "loop": {
                    "rounds": options.rounds, "seed_labels": options.seed_labels, "golden": options.golden,
                    "epochs": options.epochs, "mixing": options.mixing, "cap_share": options.cap_share,
                    "reference": options.reference, "base_model": str(config.base_model)}}
    if state.begin(identity, overwrite=command.overwrite):
        console.print(f"resuming the loop in {command.out}")
    texts = {p.id: p.text for p in posts}
    seed_examples, golden_examples = examples(seed), examples(golden)
    models = command.out / "models"
    started = time.perf_counter()

    current = command.model
    start_seconds: dict[str, float] = {}
    if current is None:
        current = models / "start"
        if not (current / "config.json").exists():
            console.rule(f"starting model: {len(seed):,} seed labels, {options.epochs} epoch(s)")
            t = time.perf_counter()
            _train(config, seed_examples, current, progress=command.progress)
            start_seconds["train"] = time.perf_counter() - t
    reports: dict[str, EvalReport] = {}

    async def golden_report(model: Path) -> EvalReport:
        key = str(model)
        if key not in reports:  # evaluate_model runs its own event loop: in a thread
            reports[key] = await asyncio.to_thread(evaluate_model, model, golden_examples, policy, options=scoring)
        return reports[key]

    rows: list[RoundRow] = []
    learned: list[LearnedLabel] = []
    promoted: bool | None = None
    labels_used = 0
    for r, window in enumerate(windows):
        part = posts[window.start:window.stop]
        done = state.round(r)
        if done is not None:
            rows.append(RoundRow.from_json(done["row"]))
            learned.extend(LearnedLabel(**x) for x in done["learned"])
            current, promoted, labels_used = Path(done["next_model"]), done["promoted"], done["labels_used"]
            continue
        console.rule(f"round {r}: posts {window.start:,}-{window.stop - 1:,} with {current.name}")
        seconds: dict[str, float] = {"classify": 0.0, "adjudicate": 0.0, "train": 0.0, "evaluate": 0.0}
        if r == 0:
            seconds["train"] += start_seconds.get("train", 0.0)
        found = state.window(f"r{r}", 0)
        t = time.perf_counter()
        if found is None:
            classifier = build_classifier(settings, backend=command.backend, model_dir=current, policy=policy)
            seconds["classify"] += time.perf_counter() - t  # the engine's start
            try:
                stages = build_stages(settings, policy, classifier, command.adjudicator)
                stages.know(part)
                timings = Timings()
                with posts_bar(console, enabled=command.progress) as bar:
                    task = bar.add_task(f"round {r}", total=len(part))
                    found = await replay(part, stages.classify, stages.adjudicate, chunk=command.chunk,
                                         timings=timings, on_chunk=partial(bar.advance, task))
            finally:
                await classifier.aclose()
            seconds["classify"] += timings.classify_s
            seconds["adjudicate"] += timings.adjudicate_s
            state.save_window(f"r{r}", 0, found)
        summary = summary_for(policy, found, command.adjudicator)
        new = learned_from(found, texts, r)
        reference_f1 = None
        if options.reference == "all" or (options.reference == "last" and r == len(windows) - 1):
            ref_dir = models / f"reference-r{r}"
            t = time.perf_counter()
            before = posts[:window.start]
            before = [p for p in before if p.id not in {g.id for g in golden}]
            if not (ref_dir / "config.json").exists():
                console.print(f"reference model: every label before the window ({len(before):,} posts)")
                _train(config, examples(before), ref_dir, progress=command.progress)
            seconds["train"] += time.perf_counter() - t
            t = time.perf_counter()
            reference_f1 = (await asyncio.to_thread(evaluate_model, ref_dir, examples(part), policy,
                                                    options=scoring)).macro_f1
            seconds["evaluate"] += time.perf_counter() - t
        next_model, next_promoted, next_used = current, None, labels_used
        learned.extend(new)
        if r + 1 < len(windows):
            mix = mix_training(seed_examples, learned, mixing=options.mixing,  # type: ignore[arg-type]
                               cap_share=options.cap_share, rng_seed=r)
            candidate = models / f"r{r + 1}"
            console.print(f"candidate: seed {mix.seed:,} + escalation labels {mix.escalations:,} (dropped by the "
                          f"cap {mix.escalations_dropped:,}) + audit labels {mix.audits:,}")
            t = time.perf_counter()
            if not (candidate / "config.json").exists():
                _train(config, mix.examples, candidate, progress=command.progress)
            seconds["train"] += time.perf_counter() - t
            t = time.perf_counter()
            decision = gate(await golden_report(candidate), await golden_report(current), tolerances_for(settings))
            seconds["evaluate"] += time.perf_counter() - t
            next_promoted = decision.accepted
            console.print("gate: [green]promoted[/]" if decision.accepted
                          else "gate: [red]refused[/]: " + "; ".join(decision.reasons))
            if decision.accepted:
                next_model, next_used = candidate, mix.escalations + mix.audits
        paid = summary.cost.frontier_usd if command.adjudicator == "frontier" else summary.cost.would_be_frontier_usd
        row = RoundRow(round=r, model=current.name, posts=summary.posts, small_model_f1=summary.small_model.macro_f1,
                       cascade_f1=summary.cascade.macro_f1, escalation_rate=summary.escalation_rate,
                       frontier_calls=summary.cost.frontier_calls, frontier_usd=paid, labels_used=labels_used,
                       promoted=promoted, reference_f1=reference_f1,
                       seconds={k: round(v, 2) for k, v in seconds.items()})
        rows.append(row)
        state.save_round(r, {"row": row.to_json(), "learned": [_learned_json(x) for x in new],
                             "next_model": str(next_model), "promoted": next_promoted, "labels_used": next_used})
        current, promoted, labels_used = next_model, next_promoted, next_used
    report = _report(command, options, history, policy, rows, time.perf_counter() - started)
    write_atomic(command.out / "learning-curve.json", codec.dumps_pretty(report))
    write_atomic(command.out / "learning-curve.md", report["markdown"].encode())
    curve_png(command.out / "learning-curve.png", rows, f"backtest loop: {policy.name}, {command.adjudicator}")
    console.print(report["markdown"], markup=False, highlight=False, soft_wrap=True)
    return report


def _train(config: TrainConfig, rows: Sequence[Example], out: Path, *, progress: bool) -> None:
    """Train into ``out`` with its model card (name and a content version the verdicts carry)."""
    write_card(train(config, rows, out, progress=progress), data_size=len(rows))


def _learned_json(x: LearnedLabel) -> dict[str, Any]:
    return {"id": x.id, "text": x.text, "label": x.label, "kind": x.kind, "round": x.round}


def _report(command: BacktestCommand, options: LoopOptions, history: History, policy: Policy,
            rows: Sequence[RoundRow], seconds: float) -> dict[str, Any]:
    gain = improvement(rows)
    lines = [f"## Backtest loop over {command.data}", "",
             f"{len(history.posts):,} posts ({'time order' if history.time_ordered else 'file order'}); seed "
             f"{options.seed_labels:,} labelled posts, golden set {options.golden:,}, {len(rows)} windows; policy "
             f"{policy.name} {policy.version}; adjudicator {command.adjudicator}; mixing {options.mixing} "
             f"(escalation share cap {options.cap_share:.0%}); {options.epochs} epoch(s) per training; "
             f"{seconds:.0f} s in all", "", curve_markdown(rows)]
    if gain is not None:
        lines.append(f"Small-model macro-F1 went from {gain['small_model_f1_first']:.3f} (round 0) to "
                     f"{gain['small_model_f1_last']:.3f} (round {len(rows) - 1}): **{gain['gain']:+.3f}**, for "
                     f"{gain['frontier_calls']:,.0f} frontier calls (${gain['frontier_usd']:.4f}"
                     f"{' at list price: the labels stood in' if command.adjudicator == 'labels' else ''}) in the "
                     f"rounds before it; the last model trained on {gain['labels_used']:,.0f} frontier labels.")
    markdown = "\n".join(lines) + "\n"
    return {"data": str(command.data), "posts": len(history.posts), "seconds": round(seconds, 1),
            "rows": [r.to_json() for r in rows], "improvement": gain, "markdown": markdown,
            "png": "learning-curve.png"}
