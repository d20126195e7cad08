"""Audit labels in the dataset: the mark survives precedence, redelivery and compaction; live precision per
category comes from them (with a human's label as the truth where a reviewer looked), in `dataset stats` and in
the eval report."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from pipeline.dataset.stats import compute_stats, live_precision, render_stats
from pipeline.dataset.store import SCHEMA, DatasetStore, audit_rows, winners
from pipeline.evaluation.render import live_markdown
from pipeline.evaluation.report import LiveView
from pipeline.metrics import wilson_interval
from pipeline.records import AuditedVerdict, Decision, Label
from tests.support.samples import SCORES, T0


def audit(post_id: str, judged: str, *, category: str | None, decision: Decision = "block",
          at: datetime = T0, verdict: str | None = None) -> Label:
    """The frontier's audit of the small model's verdict (decision, category) on ``post_id``."""
    audited = AuditedVerdict(verdict_id=verdict or f"v-{post_id}", decision=decision, category=category, route="slm")
    return Label(post_id=post_id, text=f"text of {post_id}", label=judged, source="frontier", labelled_at=at,
                 model_scores=SCORES, verdict_id=audited.verdict_id, audit=True,
                 agrees=judged == (category or "safe"), audited=audited, cost_usd=0.004)


def human(post_id: str, value: str, at: datetime = T0) -> Label:
    return Label(post_id=post_id, text=f"text of {post_id}", label=value, source="human", labelled_at=at)


def test_audit_rows_carry_their_mark_and_the_audited_verdict(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([audit("a", "spam", category="spam"), audit("b", "safe", category="spam")])
    rows = {r["post_id"]: r for r in DatasetStore(tmp_path).current().to_pylist()}  # a fresh reader
    assert (rows["a"]["audit"], rows["a"]["agrees"], rows["a"]["verdict_id"]) == (True, True, "v-a")
    assert (rows["b"]["audit"], rows["b"]["agrees"]) == (True, False)
    assert (rows["b"]["audited_decision"], rows["b"]["audited_category"], rows["b"]["audited_route"]) == (
        "block", "spam", "slm")


@pytest.mark.parametrize("human_first", [False, True])
def test_a_human_label_wins_the_post_but_the_audit_row_and_mark_stay(tmp_path: Path, human_first: bool) -> None:
    """A reviewer may decide the post before or after the audit's label arrives: either way the human label is the
    post's label, the audit row is kept (once) and the post stays marked as sampled."""
    store = DatasetStore(tmp_path)
    checked, reviewed = audit("p", "safe", category="spam"), human("p", "harassment", at=T0 + timedelta(minutes=5))
    batches = [[reviewed], [checked]] if human_first else [[checked], [reviewed]]
    for batch in batches:
        result = store.append(batch)
        assert len(result.written) == 1 and not result.skipped
    again = store.append([checked, reviewed])  # the whole stream delivered again
    assert again.written == () and len(again.skipped) == 2
    assert DatasetStore(tmp_path).append([checked]).written == ()  # and to a fresh reader of the same files

    current = store.current().to_pylist()
    assert [(r["post_id"], r["label"], r["source"], r["audit"]) for r in current] == [("p", "harassment", "human",
                                                                                         True)]
    assert store.rows().num_rows == 2
    assert [(r["label"], r["agrees"]) for r in audit_rows(store.rows()).to_pylist()] == [("safe", False)]


def test_both_in_one_batch_write_both_rows(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    result = store.append([audit("p", "safe", category="spam"), human("p", "spam", at=T0 + timedelta(minutes=1))])
    assert sorted(label.source for label in result.written) == ["frontier", "human"]
    assert audit_rows(store.rows()).num_rows == 1 and store.current()["source"].to_pylist() == ["human"]


def test_a_second_audit_of_the_same_verdict_adds_no_audit_row(tmp_path: Path) -> None:
    """The adjudicate worker crashed before its commit and judged the post again: a newer frontier label wins the
    post as usual, but the audit sample keeps one outcome per audited verdict (the first written)."""
    store = DatasetStore(tmp_path)
    store.append([audit("p", "spam", category="spam")])
    store.append([audit("p", "safe", category="spam", at=T0 + timedelta(seconds=3))])
    assert [r["label"] for r in audit_rows(store.rows()).to_pylist()] == ["spam"]
    assert store.current()["label"].to_pylist() == ["safe"]


def test_compaction_keeps_the_audit_rows(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([audit("p", "safe", category="spam"), audit("q", "spam", category="spam")])
    store.append([human("p", "spam", at=T0 + timedelta(minutes=1)), human("r", "hate")])
    before = live_precision(store.rows(), safe="safe")
    result = store.compact()
    assert (result.rows_before, result.rows_after) == (4, 4)  # nothing superseded but the kept audit row
    assert live_precision(DatasetStore(tmp_path).rows(), safe="safe") == before


def test_files_written_before_the_audit_columns_read_as_not_audited(tmp_path: Path) -> None:
    old_schema = pa.schema([f for f in SCHEMA if f.name not in ("audit", "agrees", "verdict_id", "audited_decision",
                                                                 "audited_category", "audited_route")])
    folder = tmp_path / "day=2026-11-24"
    folder.mkdir()
    row = {"post_id": "old", "text": "t", "label": "spam", "labels": None, "source": "frontier", "confidence": None,
           "model_scores": None, "model_version": None, "policy_version": None, "labelled_at": T0, "written_at": T0}
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), folder / "part-old.parquet")
    store = DatasetStore(tmp_path)
    assert store.current()["audit"].to_pylist() == [False]
    assert audit_rows(store.rows()).num_rows == 0
    store.append([audit("new", "spam", category="spam")])
    assert sorted(winners(store.rows())["audit"].to_pylist()) == [False, True]


def test_live_precision_per_category_uses_the_best_label_of_each_audited_post(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    later = T0 + timedelta(minutes=1)
    store.append([
        audit("s1", "spam", category="spam"), audit("s2", "spam", category="spam"),
        audit("s3", "safe", category="spam"),  # the frontier disagrees ...
        audit("s4", "hate", category="spam"),
        audit("a1", "safe", category=None, decision="allow"), audit("a2", "spam", category=None, decision="allow"),
        human("other", "spam"),  # not audited: not in live precision
    ])
    store.append([human("s3", "spam", at=later)])  # ... and a reviewer overrules the frontier: the verdict was right
    live, audits = live_precision(store.rows(), safe="safe")
    assert audits == 6
    by = {c.category: c for c in live}
    assert set(by) == {"safe", "spam"}
    assert (by["spam"].precision.successes, by["spam"].precision.n) == (3, 4)
    assert (by["spam"].frontier_agreed, by["spam"].reviewed) == (2, 1)
    assert by["spam"].precision == wilson_interval(3, 4)
    assert (by["safe"].precision.successes, by["safe"].precision.n, by["safe"].frontier_agreed) == (1, 2, 1)


def test_an_audit_label_without_the_audited_verdict_counts_only_when_it_agreed(tmp_path: Path) -> None:
    """Audit labels from a producer that does not send ``audited`` (only ``agrees``): an agreeing one names the
    category by its own label; a disagreeing one cannot say what was audited."""
    store = DatasetStore(tmp_path)
    bare = [Label(post_id=p, text="t", label="spam", source="frontier", audit=True, agrees=agrees, verdict_id=f"v{p}")
            for p, agrees in (("x", True), ("y", False))]
    store.append(bare)
    live, audits = live_precision(store.rows(), safe="safe")
    assert audits == 2 and [(c.category, c.precision.n) for c in live] == [("spam", 1)]


def test_dataset_stats_print_the_live_precision(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([audit(f"s{i}", "spam" if i < 9 else "safe", category="spam") for i in range(10)])
    rows = store.rows()
    stats = compute_stats(winners(rows), safe="safe", rows=rows)
    assert stats.audit_rows == 10 and stats.live[0].precision.estimate == 0.9
    console = Console(record=True, width=200)
    render_stats(stats, console, where="here")
    text = console.export_text()
    assert "live precision" in text and "90.0%" in text and "59.6% to 98.2%" in text  # Wilson 9/10
    assert "spam" in text


def test_no_audit_labels_say_so() -> None:
    console = Console(record=True, width=200)
    stats = compute_stats(SCHEMA.empty_table(), safe="safe", rows=SCHEMA.empty_table())
    assert stats.live == () and stats.audit_rows == 0
    assert "No audit labels yet" in live_markdown(LiveView("d", 0, ()))
    render_stats(stats, console, where="here")  # an empty dataset says it is empty
    assert "0 labelled posts" in console.export_text()


def test_the_eval_report_section_names_the_interval(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.append([audit("s1", "spam", category="spam"), audit("s2", "safe", category="spam")])
    live, audits = live_precision(store.rows(), safe="safe")
    view = LiveView(str(tmp_path), audits, live)
    data = view.to_json()
    assert data["audits"] == 2 and data["categories"]["spam"]["audited"] == 2
    assert data["categories"]["spam"]["precision"] == 0.5
    assert data["categories"]["spam"]["low"] == pytest.approx(wilson_interval(1, 2).low)
    assert "| spam | 2 | 1 | 50.0% |" in live_markdown(view)
