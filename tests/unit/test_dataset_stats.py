"""Dataset statistics: counts, and where the small model and the adjudicator disagree."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.dataset.stats import compute_stats, render_stats, small_model_label
from pipeline.dataset.store import DatasetStore, to_table, winners
from pipeline.records import Label, LabelSource
from tests.support.samples import T0


def scores(top: str, value: float = 0.8) -> dict[str, float]:
    rest = (1.0 - value) / 2
    return {name: (value if name == top else rest) for name in ("safe", "spam", "hate")}


def label(post_id: str, value: str, source: LabelSource = "frontier", said: str | None = None, day: int = 0,
          labels: tuple[str, ...] | None = None) -> Label:
    return Label(post_id=post_id, text="t", label=None if labels else value, labels=labels, source=source,
                 model_scores=scores(said) if said else None, labelled_at=T0 + timedelta(days=day))


def test_small_model_label_is_the_argmax_including_the_safe_class() -> None:
    assert small_model_label({"safe": 0.6, "spam": 0.3, "hate": 0.1}, "safe") == "safe"
    assert small_model_label({"safe": 0.2, "spam": 0.7, "hate": 0.1}, "safe") == "spam"
    assert small_model_label({"safe": 0.4, "spam": 0.4, "hate": 0.2}, "safe") == "safe"  # a tie goes to safe
    assert small_model_label({}, "safe") is None


def test_without_a_safe_score_a_category_needs_half_to_count() -> None:
    assert small_model_label({"spam": 0.7, "hate": 0.2}, "safe") == "spam"
    assert small_model_label({"spam": 0.3, "hate": 0.2}, "safe") == "safe"


def test_counts_by_label_source_and_day() -> None:
    rows = to_table([label("a", "spam"), label("b", "spam", "human", day=1), label("c", "safe", "import", day=1),
                     label("d", "", labels=("spam", "hate"))], T0)
    stats = compute_stats(rows, safe="safe")
    assert stats.rows == 4
    assert stats.by_label == (("spam", 3), ("hate", 1), ("safe", 1))  # the multi-label row counts for each label
    assert stats.by_source == (("frontier", 2), ("human", 1), ("import", 1))
    assert stats.by_day == (("2026-11-24", 2), ("2026-11-25", 2))
    assert stats.multi_label == 1


def test_disagreement_per_category_compares_frontier_labels_with_the_small_model() -> None:
    rows = to_table([
        label("a", "spam", said="spam"), label("b", "spam", said="safe"), label("c", "spam", said="hate"),
        label("d", "spam", said="spam"),
        label("e", "safe", said="spam"),
        label("f", "hate", "human", said="safe"),  # not an adjudication by the frontier: not compared
        label("g", "hate"),  # no scores: not compared
    ], T0)
    stats = compute_stats(rows, safe="safe")
    by_category = {d.category: d for d in stats.disagreement}
    assert set(by_category) == {"spam", "safe"}
    assert (by_category["spam"].compared, by_category["spam"].disagreed) == (4, 2)
    assert by_category["spam"].rate == pytest.approx(0.5)
    assert by_category["spam"].small_model_said == (("hate", 1), ("safe", 1))
    assert by_category["safe"].rate == 1.0
    assert stats.compared == 5 and stats.disagreement_rate == pytest.approx(3 / 5)
    with_humans = compute_stats(rows, safe="safe", adjudicators=("frontier", "human"))
    assert with_humans.compared == 6


def test_stats_use_the_current_view_not_superseded_rows(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([label("a", "spam", said="safe")])
    store.append([label("a", "safe", "human", said="safe")])
    stats = compute_stats(store.current(), safe="safe")
    assert stats.by_label == (("safe", 1),) and stats.compared == 0
    assert compute_stats(winners(store.rows()), safe="safe") == stats


def test_render_prints_every_table() -> None:
    rows = to_table([label("a", "spam", said="safe"), label("b", "safe", said="safe")], T0)
    console = Console(record=True, width=120)
    render_stats(compute_stats(rows, safe="safe"), console, where="data/dataset")
    out = console.export_text()
    assert "2 labelled posts in data/dataset" in out
    for heading in ("by label", "by source", "by day", "small model vs adjudicator"):
        assert heading in out
    assert "100.0%" in out and "50.0%" in out


def test_render_an_empty_dataset() -> None:
    console = Console(record=True, width=120)
    render_stats(compute_stats(to_table([], T0), safe="safe"), console, where="d")
    assert "0 labelled posts in d: the feedback worker has written nothing there yet" in console.export_text()


def test_render_says_when_there_is_nothing_to_compare() -> None:
    console = Console(record=True, width=120)
    render_stats(compute_stats(to_table([label("a", "spam", "human")], T0), safe="safe"), console, where="d")
    assert "no frontier labels with the small model's scores yet" in console.export_text()
