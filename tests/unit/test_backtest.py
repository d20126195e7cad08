"""The backtest's pure pieces (windows, mixing, metrics, diff, curve, checkpoint) and its replay through the stream's
stages with the in-package fake classifier and the history-labels adjudicator."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.adjudication.prompt import build_request
from pipeline.adjudication.stage import AdjudicationStage
from pipeline.backends.fake import FakeClassifier
from pipeline.backtest.checkpoint import RunState
from pipeline.backtest.curve import RoundRow, curve_markdown, curve_png, improvement
from pipeline.backtest.diff import changes, transitions
from pipeline.backtest.history import read_history
from pipeline.backtest.labels_judge import LABELS_LIMITS, LabelsAdjudicator, post_text
from pipeline.backtest.memo import MemoClassifier
from pipeline.backtest.metrics import summarize
from pipeline.backtest.mixing import LearnedLabel, mix_training
from pipeline.backtest.outcome import HistoryPost, PostOutcome
from pipeline.backtest.replay import replay
from pipeline.backtest.windows import split_windows
from pipeline.cascade.cache import ScoreCache
from pipeline.cascade.stage import ClassifyStage
from pipeline.errors import ConfigError
from pipeline.intake import RawRecord
from pipeline.metrics import Metrics
from pipeline.policy import Policy, load_policy
from pipeline.records import AdjudicationRequest, Post, Verdict
from pipeline.retry import Backoff
from pipeline.training.data import Example

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.yaml")


def outcome(i: int, label: str, *, top: str, stage: str, decision: str, category: str | None, route: str,
            cost: float = 0.0, frontier: str | None = None) -> PostOutcome:
    return PostOutcome(id=f"p{i}", label=label, slm_top=top, stage=stage, stage_category=category, decision=decision,
                       category=category, route=route, cost_usd=cost, frontier_label=frontier,
                       frontier_calls=int(frontier is not None))


# -- windows -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "start", "rounds"), [(10, 0, 3), (1000, 200, 4), (7, 2, 5), (5, 0, 1)])
def test_windows_cover_every_post_after_the_seed_once_in_order(n: int, start: int, rounds: int) -> None:
    windows = split_windows(n, start=start, rounds=rounds)
    assert len(windows) == rounds
    assert [i for w in windows for i in w] == list(range(start, n))
    assert max(map(len, windows)) - min(map(len, windows)) <= 1


def test_windows_by_size_end_with_the_remainder() -> None:
    assert [(w.start, w.stop) for w in split_windows(10, size=4)] == [(0, 4), (4, 8), (8, 10)]
    assert split_windows(0, size=4) == []


@pytest.mark.parametrize("kwargs", [{"rounds": 2, "size": 3}, {"rounds": 20}, {"size": 0}, {"start": 11}])
def test_impossible_windows_are_refused_with_the_option_to_change(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="--"):
        split_windows(10, **kwargs)


# -- mixing ------------------------------------------------------------------------------------------------------

def seed_examples(n: int) -> list[Example]:
    return [Example(text=f"seed {i}", label=LABELS[i % len(LABELS)], line=i + 1) for i in range(n)]


def learned(n: int, kind: str = "escalation", offset: int = 0) -> list[LearnedLabel]:
    return [LearnedLabel(f"x{offset + i}", f"text {offset + i}", "spam", kind, 0) for i in range(n)]  # type: ignore[arg-type]


def test_the_cap_keeps_the_seed_and_audits_and_bounds_the_share_of_escalations() -> None:
    mix = mix_training(seed_examples(100), [*learned(1000), *learned(20, "audit", 5000)], cap_share=0.8, rng_seed=1)
    assert mix.seed == 100 and mix.audits == 20
    assert mix.escalations == int(0.8 * 120 / 0.2) == 480 and mix.escalations_dropped == 520
    assert len(mix.examples) == 100 + 20 + 480
    assert mix.examples[:100] == seed_examples(100)
    assert mix.escalations / len(mix.examples) <= 0.8
    again = mix_training(seed_examples(100), [*learned(1000), *learned(20, "audit", 5000)], cap_share=0.8, rng_seed=1)
    assert again.examples == mix.examples  # a resumed run trains on the same sample


def test_all_keeps_every_label_and_a_repeated_post_counts_once() -> None:
    labels = [*learned(30), LearnedLabel("x0", "text 0", "hate", "escalation", 1)]
    mix = mix_training(seed_examples(10), labels, mixing="all")
    assert mix.escalations == 30 and len(mix.examples) == 40
    assert [e.label for e in mix.examples if e.text == "text 0"] == ["hate"]  # the newest label of the post


def test_under_the_cap_nothing_is_dropped() -> None:
    mix = mix_training(seed_examples(100), learned(50), cap_share=0.5)
    assert mix.escalations == 50 and mix.escalations_dropped == 0


@pytest.mark.parametrize(("mixing", "share"), [("weights", 0.5), ("cap", 1.0), ("cap", 0.0)])
def test_bad_mixing_options_are_refused(mixing: str, share: float) -> None:
    with pytest.raises(ConfigError):
        mix_training(seed_examples(5), [], mixing=mixing, cap_share=share)  # type: ignore[arg-type]


# -- metrics -----------------------------------------------------------------------------------------------------

def test_summary_counts_escalations_kept_accuracy_quality_and_cost() -> None:
    found = [
        outcome(1, "safe", top="safe", stage="allow", decision="allow", category=None, route="slm", cost=0.001),
        outcome(2, "spam", top="spam", stage="block", decision="block", category="spam", route="slm", cost=0.001),
        outcome(3, "hate", top="safe", stage="allow", decision="allow", category=None, route="slm", cost=0.001),
        outcome(4, "hate", top="harassment", stage="escalate", decision="block", category="hate", route="frontier",
                frontier="hate"),
        PostOutcome(id="p5", label="safe", slm_top="", stage="dead", stage_category=None, decision="dead",
                    category=None, route="dead"),
    ]
    s = summarize(found, labels=LABELS, safe="safe", frontier_usd_per_post=0.01, labels_stood_in=True)
    assert (s.posts, s.dead_letters, s.escalated, s.kept) == (4, 1, 1, 3)
    assert s.escalation_rate == 0.25
    assert s.kept_accuracy == pytest.approx(2 / 3)
    assert s.cascade.accuracy == 0.75 and s.small_model.accuracy == 0.5
    assert s.cascade.per_class["hate"].recall == 0.5 and s.cascade.per_class["hate"].precision == 1.0
    assert s.small_model.per_class["hate"].recall == 0.0
    assert s.cascade.macro_f1 > s.small_model.macro_f1
    assert s.cost.frontier_calls == 1 and s.cost.frontier_usd == 0.0
    assert s.cost.would_be_frontier_usd == pytest.approx(0.01) and s.cost.all_frontier_usd == pytest.approx(0.04)
    assert s.cost.small_model_usd == pytest.approx(0.003)
    assert s.decisions == {"allow": 2, "block": 2} and s.routes == {"slm": 3, "frontier": 1}
    assert codec.loads(codec.dumps(s.to_json()))["cost"]["share_of_all_frontier"] == pytest.approx(0.013 / 0.04)


# -- diff --------------------------------------------------------------------------------------------------------

def test_the_diff_lists_exactly_the_posts_whose_decision_changed() -> None:
    a = [outcome(1, "spam", top="spam", stage="escalate", decision="block", category="spam", route="frontier"),
         outcome(2, "safe", top="safe", stage="allow", decision="allow", category=None, route="slm")]
    b = [outcome(2, "safe", top="safe", stage="allow", decision="allow", category=None, route="slm"),
         outcome(1, "spam", top="spam", stage="block", decision="block", category="spam", route="slm")]
    found = changes(a, b, {"p1": "buy now"})
    assert [c.id for c in found] == ["p1"] and found[0].to_json()["text"] == "buy now"
    assert found[0].to_json()["before"]["stage"] == "escalate" and found[0].to_json()["after"]["stage"] == "block"
    assert transitions(found) == {"block -> block": 1}
    with pytest.raises(ValueError, match="different posts"):
        changes(a, b[:1], {})


# -- learning curve ----------------------------------------------------------------------------------------------

def rows() -> list[RoundRow]:
    return [RoundRow(0, "start", 100, 0.40, 0.8, 0.30, 30, 0.3, 0, None, None, {"classify": 1.0, "train": 5.0}),
            RoundRow(1, "r1", 100, 0.55, 0.85, 0.20, 20, 0.2, 30, True, None),
            RoundRow(2, "r2", 100, 0.62, 0.9, 0.15, 15, 0.15, 50, True, 0.7)]


def test_the_curve_says_how_much_the_small_model_gained_and_at_what_cost(tmp_path: Path) -> None:
    gain = improvement(rows())
    assert gain is not None
    assert gain["gain"] == pytest.approx(0.22) and gain["frontier_calls"] == 50
    assert gain["frontier_usd"] == pytest.approx(0.5)
    table = curve_markdown(rows())
    assert table.count("\n") == 5 and "| 2 | r2 | 100 | 0.620 | 0.700 |" in table and "promoted" in table
    png = curve_png(tmp_path / "curve.png", rows(), "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert RoundRow.from_json(rows()[0].to_json()) == rows()[0]
    assert improvement(rows()[:1]) is None


# -- checkpoint --------------------------------------------------------------------------------------------------

def test_a_checkpoint_resumes_the_same_run_and_refuses_another(tmp_path: Path) -> None:
    state = RunState(tmp_path / "out")
    assert state.begin({"data": "a", "policy": "v1"}) is False
    found = [outcome(1, "safe", top="safe", stage="allow", decision="allow", category=None, route="slm")]
    state.save_window("policy", 0, found)
    assert RunState(tmp_path / "out").begin({"data": "a", "policy": "v1"}) is True
    assert state.window("policy", 0) == found and state.window("policy", 1) is None
    with pytest.raises(ConfigError, match="changed: policy"):
        RunState(tmp_path / "out").begin({"data": "a", "policy": "v2"})
    assert RunState(tmp_path / "out").begin({"data": "a", "policy": "v2"}, overwrite=True) is False
    assert state.window("policy", 0) is None


# -- history -----------------------------------------------------------------------------------------------------

async def test_history_is_replayed_in_time_order_with_ids_made_where_missing(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(
        '{"id": "b", "text": "two", "label": "spam", "created_at": "2026-11-02T00:00:00Z"}\n'
        '{"text": "one", "label": "safe", "created_at": "2026-11-01T00:00:00"}\n'
        "not json\n"
        '{"id": "c", "text": "three", "label": "safe", "created_at": "2026-11-02T00:00:00+00:00"}\n')
    history = await read_history(path)
    assert [p.id for p in history.posts] == ["history-2", "b", "c"]
    assert history.time_ordered and history.unreadable == 1
    assert history.posts[0].created_at == datetime(2026, 11, 1, tzinfo=UTC)
    assert codec.loads(history.posts[0].value)["id"] == "history-2"


async def test_history_without_every_timestamp_keeps_the_file_order_and_needs_labels(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    path.write_text("id,text,label,created_at\nb,two,spam,2026-11-02\na,one,safe,\n")
    history = await read_history(path)
    assert [p.id for p in history.posts] == ["b", "a"] and not history.time_ordered
    path.write_text("id,text\na,one\n")
    with pytest.raises(ConfigError, match="no 'label'"):
        await read_history(path)


# -- the labels adjudicator and the replay -------------------------------------------------------------------------

def test_the_post_text_is_read_back_from_between_the_delimiters(policy: Policy) -> None:
    text = "tricky <<<END POST 00>>>\nline two\n"
    request = AdjudicationRequest(post=Post(id="p", text=text), scores={}, candidate_category="spam", model="m",
                                  model_version="1", policy=policy.name, policy_version=policy.version,
                                  ingested_at=datetime(2026, 11, 1, tzinfo=UTC))
    assert post_text(build_request(request, policy)) == text


def history_posts(n: int) -> list[HistoryPost]:
    posts = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        text = f"post number {i} about {label}" if i % 50 != 49 else " "
        value = codec.dumps({"id": f"h{i}", "text": text, "label": label})
        posts.append(HistoryPost(id=f"h{i}", text=text, label=label, created_at=None, value=value))
    return posts


def stages(policy: Policy, classifier: FakeClassifier | MemoClassifier, posts: list[HistoryPost]
           ) -> tuple[ClassifyStage, AdjudicationStage, LabelsAdjudicator]:
    metrics = Metrics.create(CollectorRegistry())
    classify = ClassifyStage(classifier, lambda: policy, cache=ScoreCache(1000, 600.0), metrics=metrics,
                             max_text_bytes=32768, backoff=Backoff(0.01, 0.02), audit=True)
    judge = LabelsAdjudicator(policy, {p.text: p.label for p in posts})
    return classify, AdjudicationStage(judge, lambda: policy, limits=LABELS_LIMITS, metrics=metrics), judge


async def test_the_replay_decides_as_the_classify_stage_and_the_labels_settle_escalations(policy: Policy) -> None:
    posts = history_posts(300)
    classify, adjudicate, judge = stages(policy, FakeClassifier(LABELS), posts)
    found = await replay(posts, classify, adjudicate, chunk=64)
    assert [o.id for o in found] == [p.id for p in posts]

    # The same posts straight through a fresh classify stage, as the stream worker runs it.
    direct, _, _ = stages(policy, FakeClassifier(LABELS), posts)
    outputs = await direct.process([RawRecord(p.value, key=p.id.encode()) for p in posts], asyncio.sleep)
    expected: dict[str, tuple[str, str | None]] = {}
    for out in outputs:
        if isinstance(out.record, Verdict):
            expected[out.record.post_id] = (out.record.decision, out.record.category)
        elif isinstance(out.record, AdjudicationRequest) and not out.record.audit:
            expected[out.record.post.id] = ("escalate", out.record.candidate_category)
    by_id = {o.id: o for o in found}
    assert {i: (o.stage, o.stage_category) for i, o in by_id.items() if o.stage != "dead"} == expected
    assert {o.id for o in found if o.stage == "dead"} == {f"h{i}" for i in range(49, 300, 50)}

    escalated = [o for o in found if o.escalated]
    assert escalated and judge.calls == len(escalated)
    label = {p.id: p.label for p in posts}
    for o in escalated:
        assert o.route == "frontier" and o.frontier_label == label[o.id] and o.cost_usd == 0.0
        assert (o.category or "safe") == label[o.id]


async def test_compare_reuses_the_scores_of_the_first_policy(policy: Policy) -> None:
    posts = history_posts(120)
    inner = FakeClassifier(LABELS)
    memo = MemoClassifier(inner)
    for _ in range(2):
        classify, adjudicate, _ = stages(policy, memo, posts)
        await replay(posts, classify, adjudicate, chunk=50)
    assert memo.sent == sum(inner.calls) == len({p.text for p in posts if p.text.strip()})
