"""The monitor's pure core: tallies per window, window statistics, PSI, closing windows, the alert rules, baseline
files and the policy's ``monitor:`` section."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.errors import ConfigError, PolicyError
from pipeline.metrics import Metrics
from pipeline.monitor.baseline import Reference, baseline_from_scores, load_baseline, save_baseline
from pipeline.monitor.rules import Window, dead_letter_alert, evaluate
from pipeline.monitor.stats import combine, psi, stat_names, summarize
from pipeline.monitor.tally import GLOBAL, score_bin, tally
from pipeline.monitor.windows import Clock, Watermarks, due_windows, is_closed, window_start
from pipeline.policy import Monitor, load_policy, parse_policy
from pipeline.records import AdjudicationRequest, DeadLetter, Post, Verdict, alert_id, verdict_id

REPO = Path(__file__).resolve().parents[2]
DEFAULT = (REPO / "policies" / "default.yaml").read_text("utf-8")
CATEGORIES = ("spam", "hate")
LABELS = ("safe", *CATEGORIES)
T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)  # a multiple of 60 s since the epoch


def scores(spam: float, hate: float = 0.01) -> dict[str, float]:
    return {"safe": round(1 - spam - hate, 6), "spam": spam, "hate": hate}


def verdict(post: str, *, at: datetime, decision: str = "allow", category: str | None = None, route: str = "slm",
            spam: float = 0.05, policy: str = "default", final: bool = True) -> Verdict:
    return Verdict.model_validate(dict(
        verdict_id=verdict_id(post, "v1"), post_id=post, decision=decision, category=category, scores=scores(spam),
        route=route, final=final, model="m", model_version="1", policy=policy, policy_version="v1", latency_ms=1.0,
        cost_usd=0.0, decided_at=at))


def escalation(post: str, *, at: datetime, spam: float = 0.5, category: str | None = "spam") -> AdjudicationRequest:
    return AdjudicationRequest(post=Post(id=post, text="x"), scores=scores(spam), candidate_category=category,
                               model="m", model_version="1", policy="default", policy_version="v1", ingested_at=at,
                               enqueued_at=at)


# --- tally -----------------------------------------------------------------------------------------------------


def test_score_bins_are_equal_width_and_close_at_one() -> None:
    assert [score_bin(s, 10) for s in (0.0, 0.05, 0.1, 0.55, 0.999, 1.0)] == [0, 0, 1, 5, 9, 9]
    assert score_bin(0.5, 2) == 1 and score_bin(0.49, 2) == 0


def test_tally_counts_each_post_once_in_its_own_window() -> None:
    later = T0 + timedelta(seconds=61)
    records = [
        verdict("a", at=T0, spam=0.05),
        verdict("b", at=T0 + timedelta(seconds=10), decision="block", category="spam", spam=0.95),
        escalation("c", at=T0 + timedelta(seconds=20), spam=0.5),
        # c's frontier verdict: final, counted as a decision and an adjudication, not as a second small-model output
        verdict("c", at=T0 + timedelta(seconds=30), decision="block", category="spam", route="frontier", spam=0.5),
        verdict("d", at=T0 + timedelta(seconds=40), route="frontier", spam=0.7),  # frontier allows: disagrees
        DeadLetter.of(b"{", stage="classify.decode", error=ValueError("bad"), reason="invalid_json"),
        verdict("e", at=later, spam=0.15),
    ]
    dead = records[5]
    assert isinstance(dead, DeadLetter)
    records[5] = dead.model_copy(update={"failed_at": T0 + timedelta(seconds=50)})
    counts = tally(records, categories=CATEGORIES, safe="safe", bins=10, window_s=60)
    w0, w1 = T0.timestamp(), T0.timestamp() + 60
    expected = {
        (w0, "default", "posts"): 3, (w0, GLOBAL, "records"): 3, (w0, "default", "escalated"): 1,
        (w0, "default", "escalated|spam"): 1, (w0, "default", "final"): 4, (w0, "default", "decision|allow"): 2,
        (w0, "default", "decision|block"): 2, (w0, "default", "block|spam"): 2,
        (w0, "default", "adjudicated"): 2, (w0, "default", "disagree"): 1,
        (w0, "default", "bin|spam|0"): 1, (w0, "default", "bin|spam|9"): 1, (w0, "default", "bin|spam|5"): 1,
        (w0, "default", "bin|hate|0"): 3, (w0, GLOBAL, "dead_letters"): 1,
        (w1, "default", "posts"): 1, (w1, GLOBAL, "records"): 1, (w1, "default", "final"): 1,
        (w1, "default", "decision|allow"): 1, (w1, "default", "bin|spam|1"): 1, (w1, "default", "bin|hate|0"): 1,
    }
    assert dict(counts) == expected


# --- statistics ----------------------------------------------------------------------------------------------


def test_summary_rates_and_combining_windows() -> None:
    counts = {"posts": 200, "escalated": 20, "final": 190, "decision|allow": 170, "decision|block": 20,
              "block|spam": 15, "block|hate": 5, "adjudicated": 10, "disagree": 4, "bin|spam|0": 150,
              "bin|spam|1": 50}
    s = summarize(counts, categories=CATEGORIES, bins=2)
    assert s.escalation_rate == pytest.approx(0.1)
    assert s.block_rate("spam") == pytest.approx(15 / 190)
    assert s.disagreement_rate == pytest.approx(0.4)
    assert s.decision_mix() == pytest.approx({"allow": 170 / 190, "block": 20 / 190, "review": 0.0})
    assert s.histograms == {"spam": (150, 50), "hate": (0, 0)}
    both = combine([s, s])
    assert (both.posts, both.escalated, both.blocks["spam"], both.histograms["spam"]) == (400, 40, 30, (300, 100))
    assert both.escalation_rate == s.escalation_rate
    assert set(stat_names(CATEGORIES, 2)) >= set(counts)


def test_psi_is_zero_for_the_same_shape_and_grows_with_the_shift() -> None:
    reference = [50, 30, 15, 5]
    assert psi(reference, [100, 60, 30, 10]) == pytest.approx(0.0)
    small, large = psi(reference, [45, 32, 17, 6]), psi(reference, [5, 15, 30, 50])
    assert 0 < small < 0.1 < 1.0 < large
    # Hand-computed for two bins: (0.8 - 0.5) ln(0.8/0.5) + (0.2 - 0.5) ln(0.2/0.5)
    assert psi([1, 1], [4, 1]) == pytest.approx(0.3 * math.log(1.6) - 0.3 * math.log(0.4))
    assert math.isfinite(psi([1, 0], [0, 1]))  # empty bins are floored, not infinite
    with pytest.raises(ValueError, match="bins"):
        psi([1, 2], [1, 2, 3])


# --- windows -------------------------------------------------------------------------------------------------


def test_windows_are_epoch_aligned_and_close_by_stream_time_or_quiet() -> None:
    assert window_start(125.0, 60) == 120.0 and window_start(120.0, 60) == 120.0 and window_start(119.9, 60) == 60.0
    # Stream time past the end + lateness closes it, whatever the wall clock says (a replayed backlog).
    assert is_closed(0, 60, 5, Clock(watermark=65, wall_now=10, last_record_wall=10))
    assert not is_closed(0, 60, 5, Clock(watermark=64, wall_now=10, last_record_wall=10))
    # A stream that went quiet: the wall clock closes it once no record came for the lateness.
    assert is_closed(0, 60, 5, Clock(watermark=30, wall_now=70, last_record_wall=64))
    assert not is_closed(0, 60, 5, Clock(watermark=30, wall_now=70, last_record_wall=66))
    clock = Clock(watermark=240, wall_now=240, last_record_wall=240)
    assert due_windows(0, None, 60, 5, clock) == [0, 60, 120]
    assert due_windows(0, 60, 60, 5, clock) == [120]
    assert due_windows(0, 120, 60, 5, clock) == []
    assert due_windows(0, None, 60, 5, clock, limit=2) == [0, 60]


# --- rules ---------------------------------------------------------------------------------------------------


def window_counts(rng: random.Random, n: int, *, spam_mean: float, escalate: float = 0.05,
                  block_spam: float = 0.02) -> dict[str, int]:
    counts = {"posts": n, "escalated": round(n * escalate), "final": n, "decision|block": round(n * block_spam),
              "block|spam": round(n * block_spam)}
    counts["decision|allow"] = n - counts["decision|block"]
    for _ in range(n):
        score = min(max(rng.gauss(spam_mean, 0.1), 0.0), 1.0)
        key = f"bin|spam|{score_bin(score, 10)}"
        counts[key] = counts.get(key, 0) + 1
        counts["bin|hate|0"] = counts.get("bin|hate|0", 0) + 1
    return counts


def kinds(alerts: list) -> set[tuple[str, str | None]]:  # type: ignore[type-arg]
    return {(a.kind, a.category) for a in alerts}


def test_rules_alert_on_a_shift_and_stay_quiet_on_the_same_stream() -> None:
    rng, config = random.Random(7), Monitor()
    reference = Reference.of_summary(combine(
        summarize(window_counts(rng, 500, spam_mean=0.1), categories=CATEGORIES, bins=10) for _ in range(4)))
    window = Window("default", T0.timestamp(), 300)
    same = summarize(window_counts(rng, 500, spam_mean=0.1), categories=CATEGORIES, bins=10)
    assert evaluate(window, same, reference, config) == []
    shifted = summarize(window_counts(rng, 500, spam_mean=0.45, escalate=0.2, block_spam=0.2), categories=CATEGORIES,
                        bins=10)
    alerts = evaluate(window, shifted, reference, config)
    assert kinds(alerts) == {("drift", "spam"), ("escalation_rate", None), ("block_rate", "spam")}
    drift = next(a for a in alerts if a.kind == "drift")
    assert drift.value > config.psi_max and drift.count == 500 and drift.threshold == config.psi_max
    assert drift.window_start == T0 and drift.window_end == T0 + timedelta(seconds=300)
    assert drift.alert_id == alert_id("default", "drift", "spam", T0)  # the same window alerts with the same id
    block = next(a for a in alerts if a.kind == "block_rate")
    assert block.value == pytest.approx(0.2) and block.threshold == pytest.approx(block.reference * 3)
    assert block.key == "default/spam/block_rate"
    # Too few posts in the window: no drift or rate alert, however different.
    thin = summarize(window_counts(rng, 50, spam_mean=0.45, escalate=0.4), categories=CATEGORIES, bins=10)
    assert evaluate(window, thin, reference, config) == []
    # No reference yet (the first window): nothing to compare with.
    assert evaluate(window, shifted, None, config) == []


def test_block_rate_needs_its_minimum_count() -> None:
    rng = random.Random(3)
    reference = Reference.of_summary(summarize(window_counts(rng, 1000, spam_mean=0.1, block_spam=0.001),
                                               categories=CATEGORIES, bins=10))
    current = summarize(window_counts(rng, 1000, spam_mean=0.1, block_spam=0.019), categories=CATEGORIES, bins=10)
    window = Window("default", 0, 300)
    assert kinds(evaluate(window, current, reference, Monitor(min_events=20))) == set()
    assert kinds(evaluate(window, current, reference, Monitor(min_events=19))) == {("block_rate", "spam")}


def test_disagreement_and_dead_letter_rules() -> None:
    window, config = Window("default", 0, 300), Monitor()
    counts = {"posts": 10, "final": 10, "adjudicated": 30, "disagree": 16}
    current = summarize(counts, categories=CATEGORIES, bins=10)
    assert kinds(evaluate(window, current, None, config)) == {("disagreement", None)}
    assert evaluate(window, summarize({**counts, "disagree": 15}, categories=CATEGORIES, bins=10), None, config) == []
    assert evaluate(window, summarize({**counts, "adjudicated": 19, "disagree": 19}, categories=CATEGORIES, bins=10),
                    None, config) == []
    alert = dead_letter_alert(window, 3, 197, config)
    assert alert is not None and alert.kind == "dead_letter_rate" and alert.value == pytest.approx(0.015)
    assert dead_letter_alert(window, 2, 198, config) is None  # 1.0 % is not above 1 %
    assert dead_letter_alert(window, 50, 49, config) is None  # too few records to say


# --- baseline files ------------------------------------------------------------------------------------------


def test_baseline_from_scores_round_trips_and_is_a_reference(tmp_path: Path) -> None:
    policy = load_policy(REPO / "policies" / "default.yaml")
    labels = (policy.taxonomy.safe, *policy.taxonomy.categories)
    rows = [dict.fromkeys(labels, 0.01) | {"safe": 0.94} for _ in range(90)]
    rows += [dict.fromkeys(labels, 0.01) | {"spam": 0.95} for _ in range(5)]
    rows += [dict.fromkeys(labels, 0.01) | {"spam": 0.5} for _ in range(5)]
    baseline = baseline_from_scores(rows, policy, model="m", model_version="1")
    assert baseline.posts == 100 and baseline.escalation_rate == pytest.approx(0.05)
    assert baseline.block_rates["spam"] == pytest.approx(0.05)
    assert baseline.score_histograms["spam"][0] == 90 and baseline.score_histograms["spam"][9] == 5
    path = save_baseline(baseline, tmp_path / "baseline.json")
    assert load_baseline(path, bins=10) == baseline
    reference = Reference.of_baseline(baseline, policy.taxonomy.categories)
    assert reference.histograms["spam"][0] == pytest.approx(0.9)
    with pytest.raises(ConfigError, match=r"monitor\.score_bins is 20"):
        load_baseline(path, bins=20)
    with pytest.raises(ConfigError, match="does not exist"):
        load_baseline(tmp_path / "missing.json", bins=10)
    (tmp_path / "bad.json").write_text('{"score_bins": 10, "posts": 1, "escalation_rate": 0.1, "histogram": {}}')
    with pytest.raises(ConfigError, match="is invalid"):
        load_baseline(tmp_path / "bad.json", bins=10)


# --- the policy's monitor section ----------------------------------------------------------------------------


def without_monitor_section(text: str) -> str:
    head, rest = text.split("\nmonitor:", 1)
    return head + "\n" + rest.split("\n\n", 1)[1]


def test_the_monitor_section_is_optional_and_the_default_file_spells_out_the_defaults() -> None:
    assert parse_policy(without_monitor_section(DEFAULT)).monitor == Monitor()
    assert parse_policy(DEFAULT).monitor == Monitor()  # policies/default.yaml states every default


def test_the_monitor_section_is_strict_and_names_the_fix() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(DEFAULT.replace("  window_s: 300", "  window_secs: 300", 1))
    assert "monitor.window_secs: unknown key 'window_secs' (did you mean 'window_s'?)" in str(caught.value)
    with pytest.raises(PolicyError) as caught:
        parse_policy(DEFAULT.replace("  reference: trailing", "  reference: baseline", 1))
    assert "monitor.baseline: reference is 'baseline' but no baseline file is named" in str(caught.value)
    with pytest.raises(PolicyError) as caught:
        parse_policy(DEFAULT.replace("  psi_max: 0.25", "  psi_max: 0", 1))
    assert "monitor.psi_max" in str(caught.value)


def test_the_watermark_is_the_slowest_active_partitions_time() -> None:
    marks = Watermarks(idle_s=2.0)
    assert marks.watermark(100.0) == 0.0
    marks.advance("verdicts", 500.0, now=100.2)
    marks.advance("adjudication", 300.0, now=100.5)
    assert marks.watermark(102.0) == 0.0  # every partition gets the idle time to deliver its first records
    assert marks.watermark(102.2) == 300.0  # the adjudication topic lags behind: it holds the watermark back
    marks.advance("verdicts", 520.0, now=103.0)
    assert marks.watermark(103.0) == 520.0  # adjudication idle for 2.5 s: it no longer does
    assert marks.watermark(106.0) == 520.0  # everything idle: all records seen, the newest time is the watermark


# -- hot reload: thresholds apply, the window layout needs a restart -------------------------------------------


def test_a_running_monitor_takes_new_thresholds_and_refuses_a_new_window_layout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.monitor.layout import fixed_layout
    from pipeline.policy import PolicyStore
    from tests.support.policies import default_policy_with_monitor

    path = default_policy_with_monitor(tmp_path, {"window_s": 60, "psi_max": 0.25})
    store = PolicyStore(path, accept=fixed_layout(str(path)))

    default_policy_with_monitor(tmp_path, {"window_s": 60, "psi_max": 0.1})
    assert store.reload()
    assert store.current.monitor.psi_max == 0.1

    default_policy_with_monitor(tmp_path, {"window_s": 30, "psi_max": 0.05, "score_bins": 20})
    assert not store.reload()
    assert store.current.monitor.psi_max == 0.1 and store.current.monitor.window_s == 60  # the last good policy
    assert isinstance(store.last_error, PolicyError)
    fields = {issue.field for issue in store.last_error.issues}
    assert fields == {"monitor.window_s", "monitor.score_bins"}
    assert "changed from 60 to 30 while the monitor runs: restart the monitor" in str(store.last_error)
    assert "monitor.window_s" in caplog.text


@pytest.mark.tools  # importing faust runs `file` on the interpreter (platform.architecture)
def test_the_monitor_app_follows_its_policy_file(tmp_path: Path) -> None:
    pytest.importorskip("faust")
    from pipeline.monitor.app import MonitorApp
    from pipeline.monitor.layout import fixed_layout
    from pipeline.policy import PolicyStore
    from pipeline.settings import Settings
    from tests.support.policies import default_policy_with_monitor

    path = default_policy_with_monitor(tmp_path, {"window_s": 60, "min_posts": 200})
    store = PolicyStore(path, accept=fixed_layout(str(path)))
    settings = Settings().model_copy(update={"policy_path": path})
    app = MonitorApp(settings, store, metrics=Metrics.create(CollectorRegistry()), policy_path=path)
    assert not app.reload_policy()  # nothing changed since it started
    default_policy_with_monitor(tmp_path, {"window_s": 60, "min_posts": 50})
    assert app.reload_policy()
    assert app.config.min_posts == 50 and app.policy is store.current
