"""The `modcascade` command line, run as a user runs it: real subprocesses against the session broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import codec
from pipeline.records import DeadLetter, Post
from pipeline.settings import Settings
from tests.kafka_helpers import unique

pytestmark = pytest.mark.integration


def modcascade(*args: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def cli_env(kafka_settings: Settings) -> dict[str, str]:
    """The environment of a user pointed at the session broker, with topics of their own (a prefix)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODCASCADE_")}
    env["MODCASCADE_KAFKA_BOOTSTRAP"] = kafka_settings.bootstrap
    # Auto idempotence means "on" for any configured bootstrap; keep what the session broker supports.
    env["MODCASCADE_KAFKA_IDEMPOTENCE"] = str(kafka_settings.idempotence).lower()
    env["MODCASCADE_TOPIC_PREFIX"] = unique("cli") + "."
    env["COLUMNS"] = "200"
    return env


def test_run_pushes_the_sample_stream_through_intake_and_dead_letters_the_bad_lines(cli_env: dict[str, str]) -> None:
    result = modcascade("run", env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "57 valid posts, 3 dead letters" in result.stdout
    assert "policy default version" in result.stdout

    tailed = modcascade("tail", "dead-letter", env=cli_env)
    assert tailed.returncode == 0, tailed.stderr
    letters = [codec.decode(line, DeadLetter) for line in tailed.stdout.splitlines()]
    assert sorted(d.reason for d in letters) == ["empty_text", "invalid_json", "invalid_record"]
    assert all(d.stage == "echo.intake" and d.source_topic == cli_env["MODCASCADE_TOPIC_PREFIX"] + "posts"
               for d in letters)


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
