"""The reliability bench's pure parts: its seeded inputs, its kill schedule and the exact account of the outputs."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from aiokafka import ConsumerRecord

from pipeline import codec
from pipeline.bench.reliability import ChaosOptions, Inputs, kill_schedule, make_inputs, worker_environment
from pipeline.bench.reliability_report import Kill, account, render_markdown
from pipeline.errors import ConfigError
from pipeline.intake import RawRecord, read_post
from pipeline.records import DeadLetter
from pipeline.settings import Settings

pytestmark = pytest.mark.unit

MAX_TEXT = 32_768


def test_inputs_are_seeded_and_counted() -> None:
    options = ChaosOptions(posts=600, malformed=40, large_mb=(0.5, 1.0), seed=3)
    inputs = make_inputs(options, "t", max_text_bytes=MAX_TEXT)

    assert inputs == make_inputs(options, "t", max_text_bytes=MAX_TEXT)
    assert inputs != make_inputs(ChaosOptions(posts=600, malformed=40, large_mb=(0.5, 1.0), seed=4), "t",
                                 max_text_bytes=MAX_TEXT)
    assert len(inputs.records) == 600 and len(inputs.valid) == 560 and len(inputs.malformed) == 40
    assert inputs.smallest == 0 and inputs.largest >= 2**20
    assert {key.decode() for key, _ in inputs.records} == inputs.keys


def test_the_malformed_inputs_are_what_intake_refuses_and_the_valid_ones_what_it_accepts() -> None:
    inputs = make_inputs(ChaosOptions(posts=300, malformed=60, large_mb=(0.5,), seed=1), "t",
                         max_text_bytes=MAX_TEXT)
    refused = set()
    for i, (key, value) in enumerate(inputs.records):
        outcome = read_post(RawRecord(value, key=key, topic="posts", partition=0, offset=i), stage="test",
                            max_text_bytes=MAX_TEXT)
        if isinstance(outcome, DeadLetter):
            refused.add(key.decode())
    assert refused == inputs.malformed


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="malformed"):
        ChaosOptions(posts=10, malformed=1, large_mb=(1.0, 2.0)).check()
    with pytest.raises(ConfigError, match="fewer than the posts"):
        ChaosOptions(posts=10, malformed=10, large_mb=()).check()


def test_kills_are_spread_over_the_stream_before_its_end() -> None:
    schedule = kill_schedule(20, random.Random(0))
    assert schedule == sorted(schedule) and len(schedule) == 20
    assert 0 < schedule[0] < 0.9 / 20 and schedule[-1] < 0.9
    assert schedule == kill_schedule(20, random.Random(0))


def test_the_workers_get_the_runs_settings_and_never_the_real_frontier_key() -> None:
    options = ChaosOptions(frontier_url="http://127.0.0.1:1")
    env = worker_environment(Settings(), options, {"ANTHROPIC_API_KEY": "real", "MODCASCADE_WORKER_GROUP_ID": "x",
                                                   "MODCASCADE_KAFKA_SSL_CAFILE": "/ca.pem", "PATH": "/bin"})
    assert "ANTHROPIC_API_KEY" not in env and env["MODCASCADE_ANTHROPIC_API_KEY"] != "real"
    assert env["MODCASCADE_ADJUDICATOR_BASE_URL"] == "http://127.0.0.1:1"
    assert env["MODCASCADE_WORKER_GROUP_ID"] == Settings().worker.group_id
    assert env["MODCASCADE_KAFKA_SSL_CAFILE"] == "/ca.pem" and env["PATH"] == "/bin"
    assert "MODCASCADE_ADJUDICATOR_BASE_URL" not in worker_environment(Settings(), ChaosOptions(), {})


def _message(topic: str, value: object, timestamp: int, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    raw = codec.dumps(value)
    return ConsumerRecord(topic, 0, offset, timestamp, 0, None, raw, None, 0, len(raw), ())


def _verdict(post_id: str, ts: int, decision: str = "allow", route: str = "slm") -> ConsumerRecord[bytes, bytes]:
    return _message("verdicts", {"post_id": post_id, "decision": decision, "route": route}, ts)


def _dead(key: str, ts: int) -> ConsumerRecord[bytes, bytes]:
    return _message("dead-letter", {"original_key": key}, ts)


def _inputs(valid: Sequence[str], malformed: Sequence[str]) -> Inputs:
    records = [(k.encode(), b"{}") for k in [*valid, *malformed]]
    return Inputs(records, frozenset(valid), frozenset(malformed))


def test_the_account_counts_lost_ids_dead_letters_and_duplicates_exactly() -> None:
    inputs = _inputs(["a", "b", "c", "d"], ["bad-1", "bad-2", "bad-3"])
    kills = [Kill(at=10.0, worker="classify-0", progress=0.3), Kill(at=20.0, worker="adjudicate-0", progress=0.6)]
    read = {
        "verdicts": [_verdict("a", 1_000), _verdict("a", 15_000), _verdict("a", 25_000),  # 2 duplicates, 1 late
                     _verdict("b", 5_000, "block"), _verdict("b", 21_000, "allow"),  # 1 late, conflicting
                     _verdict("bad-3", 3_000)],  # a malformed input with a verdict
        "dead_letter": [_dead("bad-1", 2_000), _dead("bad-1", 22_000), _dead("bad-2", 4_000), _dead("c", 6_000)],
        "adjudication": [],
        "labels": [_message("labels", {"post_id": "b"}, 9_000), _message("labels", {"post_id": "b"}, 19_000)],
    }

    result = account(ChaosOptions(), inputs, read, kills=kills, crashes=[], elapsed_s=1.0, completed=False,
                     adjudicating=True, broker="b", load_before=0.0, backend="fake")

    assert result.lost == ("d",)  # c has a dead letter, bad-3 a verdict: both ended
    assert (result.malformed_dead_lettered, result.malformed_dead_lettered_once) == (2, 1)
    assert result.malformed_with_verdict == 1 and result.valid_dead_lettered == 1
    v, dl, lab = result.duplicates["verdicts"], result.duplicates["dead_letter"], result.duplicates["labels"]
    assert (v.total, v.after_last_kill, v.ids) == (3, 2, 2)
    assert (dl.total, dl.after_last_kill, dl.ids) == (1, 1, 1)
    assert (lab.total, lab.after_last_kill, lab.ids) == (1, 0, 1)
    assert result.conflicting == 1
    assert result.routes == {"slm": 3}
    text = render_markdown(result, machine="m", date="d")
    assert "| **lost** (no final verdict and no dead letter) | **1** |" in text
    assert "| duplicate verdicts records (for 2 ids) / of them after the last kill | 3 / 2 |" in text


def test_without_adjudication_a_request_ends_a_post() -> None:
    inputs = _inputs(["a"], ["bad-1"])
    read = {"verdicts": [], "dead_letter": [_dead("bad-1", 1)],
            "adjudication": [_message("adjudication", {"post": {"id": "a"}}, 1)], "labels": []}
    common = {"kills": [], "crashes": [], "elapsed_s": 1.0, "completed": True, "broker": "b", "load_before": 0.0,
              "backend": "fake"}
    assert account(ChaosOptions(), inputs, read, adjudicating=False, **common).lost == ()  # type: ignore[arg-type]
    assert account(ChaosOptions(), inputs, read, adjudicating=True, **common).lost == ("a",)  # type: ignore[arg-type]
