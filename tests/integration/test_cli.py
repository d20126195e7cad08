"""The `modcascade` command line, run as a user runs it: real subprocesses against the session broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import codec
from pipeline.app.demo import demo_stream
from pipeline.errors import DecodeError
from pipeline.records import AdjudicationRequest, DeadLetter, Post, Verdict
from pipeline.settings import Settings
from tests.support.frontier import MessagesServer, Reply, Usage
from tests.support.kafka import unique


def modcascade(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def cli_env(kafka_settings: Settings) -> dict[str, str]:
    """The environment of a user pointed at the session broker, with topics of their own (a prefix)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MODCASCADE_") and k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    env["MODCASCADE_KAFKA_BOOTSTRAP"] = kafka_settings.bootstrap
    # Auto idempotence means "on" for any configured bootstrap; keep what the session broker supports.
    env["MODCASCADE_KAFKA_IDEMPOTENCE"] = str(kafka_settings.idempotence).lower()
    env["MODCASCADE_TOPIC_PREFIX"] = unique("cli") + "."
    env["COLUMNS"] = "200"
    return env


def test_run_streams_posts_through_the_real_model_and_accounts_for_every_one(
    cli_env: dict[str, str], minilm_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    env = {**cli_env, "MODCASCADE_MODEL_DIR": str(minilm_dir), "MODCASCADE_METRICS_PORT": "0"}
    result = modcascade("run", "--posts", "300", "--rate", "300", "--out", str(out), env=env, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "300 of 300" in result.stdout
    assert "policy default version" in result.stdout and "latency p50 / p99" in result.stdout
    assert "await adjudication" in result.stdout and "MODCASCADE_ANTHROPIC_API_KEY" in result.stdout

    expected = demo_stream(300)
    valid = {codec.loads(v)["id"] for v in expected if _is_post(v)}
    verdicts = [codec.decode(line, Verdict) for line in (out / "verdicts.jsonl").read_bytes().splitlines()]
    requests = [codec.decode(line, AdjudicationRequest)
                for line in (out / "adjudication.jsonl").read_bytes().splitlines()]
    letters = [codec.decode(line, DeadLetter) for line in (out / "dead-letter.jsonl").read_bytes().splitlines()]
    assert {v.post_id for v in verdicts} | {r.post.id for r in requests} == valid
    assert len(letters) == len(expected) - len(valid) > 0
    assert all(d.stage == "classify.intake" and d.source_topic == cli_env["MODCASCADE_TOPIC_PREFIX"] + "posts"
               for d in letters)


async def test_run_with_a_frontier_model_configured_adjudicates_every_escalation(
    cli_env: dict[str, str], minilm_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    async with MessagesServer(default=Reply.tool({"category": "spam", "decision": "block", "rationale": "Ad."},
                                                 usage=Usage(input=120, output=40, cache_read=800))) as server:
        env = {**cli_env, "MODCASCADE_MODEL_DIR": str(minilm_dir), "MODCASCADE_METRICS_PORT": "0",
               "MODCASCADE_ANTHROPIC_API_KEY": "test-key", "MODCASCADE_ADJUDICATOR_BASE_URL": server.url,
               # The test model is weak (it escalates most posts): lift the default 5 calls/s.
               "MODCASCADE_ADJUDICATOR_RATE_PER_S": "200", "MODCASCADE_ADJUDICATOR_BURST": "50"}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pipeline.cli", "run", "--posts", "200", "--rate", "300", "--out", str(out),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    output = stdout.decode()
    assert process.returncode == 0, output
    assert "adjudication: claude-sonnet-4-6 through anthropic" in output and "frontier cost (real" in output

    verdicts = [codec.decode(line, Verdict) for line in (out / "verdicts.jsonl").read_bytes().splitlines()]
    escalated = {codec.decode(line, AdjudicationRequest).post.id
                 for line in (out / "adjudication.jsonl").read_bytes().splitlines()}
    frontier = [v for v in verdicts if v.route == "frontier"]
    assert escalated and sorted(v.post_id for v in frontier) == sorted(escalated)  # one each
    assert all(v.rationale == "Ad." and v.cost_usd > 0 for v in frontier)
    assert len(server.requests) == len(escalated)


def _is_post(value: bytes) -> bool:
    try:
        codec.decode(value, Post)
    except DecodeError:
        return False
    return True


def test_produce_then_tail_returns_the_lines_byte_for_byte(cli_env: dict[str, str], tmp_path: Path) -> None:
    lines = ['{"id": "a1", "text": "first"}', '{"id": 2, "text": "second"}', "not json at all"]
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(lines) + "\n\n")
    assert modcascade("broker", env=cli_env, timeout=60).returncode == 0  # creates the topics on a real broker
    produced = modcascade("produce", str(src), env=cli_env)
    assert produced.returncode == 0, produced.stderr
    assert "published 3 records" in produced.stdout
    tailed = modcascade("tail", "posts", env=cli_env)
    assert sorted(tailed.stdout.splitlines()) == sorted(lines)
    assert codec.decode(lines[0], Post).id == "a1"


@pytest.mark.tools
def test_policy_check_exit_codes(tmp_path: Path) -> None:
    env = dict(os.environ)
    ok = modcascade("policy", "check", "policies/", env=env)
    assert ok.returncode == 0 and "OK policies/default.yaml" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("policies/default.yaml").read_text().replace("fallback: small_model", "fallback: maybe"))
    failed = modcascade("policy", "check", str(bad), env=env)
    assert failed.returncode == 1
    assert f"{bad}:" in failed.stdout and "fallback" in failed.stdout


def test_a_configuration_error_is_one_line_and_exit_code_2(cli_env: dict[str, str]) -> None:
    result = modcascade("settings", env={**cli_env, "MODCASCADE_KAFKA_PARTITONS": "3"})
    assert result.returncode == 2
    assert "did you mean MODCASCADE_KAFKA_PARTITIONS" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_idempotent_producer_against_the_embedded_broker_names_the_setting_to_change(
    cli_env: dict[str, str], kafka_settings: Settings, tmp_path: Path
) -> None:
    if not kafka_settings.uses_embedded_broker:
        pytest.skip("real Kafka supports idempotent producers")
    src = tmp_path / "one.jsonl"
    src.write_text('{"id": "x", "text": "y"}\n')
    result = modcascade("produce", str(src), env={**cli_env, "MODCASCADE_KAFKA_IDEMPOTENCE": "true"})
    assert result.returncode == 2
    assert "MODCASCADE_KAFKA_IDEMPOTENCE=false" in result.stderr
    assert "Unclosed" not in result.stderr
