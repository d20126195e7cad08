"""Settings: one module reads the environment; typos and bad values fail with the variable's name."""

from __future__ import annotations

import pytest

from pipeline.errors import SettingsError
from pipeline.settings import Settings, check_environment, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.upper().startswith("MODCASCADE_") or key.upper() in {"KAFKA_BOOTSTRAP", "ANTHROPIC_API_KEY"}:
            monkeypatch.delenv(key)


def test_defaults_use_the_embedded_broker_without_idempotence() -> None:
    settings = load_settings()
    assert settings.uses_embedded_broker
    assert settings.bootstrap == "127.0.0.1:19092"
    assert settings.idempotence is False
    assert settings.kafka.acks == "all"


def test_a_real_kafka_turns_idempotence_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka:9092")
    settings = load_settings()
    assert (settings.uses_embedded_broker, settings.bootstrap, settings.idempotence) == (False, "kafka:9092", True)


def test_prefixed_name_wins_and_idempotence_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODCASCADE_KAFKA_BOOTSTRAP", "a:1")
    monkeypatch.setenv("MODCASCADE_KAFKA_IDEMPOTENCE", "false")
    settings = load_settings()
    assert (settings.bootstrap, settings.idempotence) == ("a:1", False)


def test_grouped_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODCASCADE_KAFKA_PARTITIONS", "8")
    monkeypatch.setenv("MODCASCADE_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("MODCASCADE_MAX_TEXT_BYTES", "1000")
    settings = load_settings()
    assert settings.kafka.partitions == 8
    assert settings.topics.all()["dead_letter"] == "staging.dead-letter"
    assert settings.max_text_bytes == 1000


def test_a_typo_is_an_error_that_suggests_the_real_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODCASCADE_KAFKA_PARTITONS", "8")
    with pytest.raises(SettingsError, match=r"MODCASCADE_KAFKA_PARTITONS.*did you mean MODCASCADE_KAFKA_PARTITIONS"):
        load_settings()


def test_an_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODCASCADE_KAFKA_PARTITIONS", "zero")
    with pytest.raises(SettingsError, match="MODCASCADE_KAFKA_PARTITIONS"):
        load_settings()


def test_sasl_without_credentials_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODCASCADE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError, match="SASL_USERNAME"):
        load_settings()


def test_secrets_are_masked_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("MODCASCADE_KAFKA_SASL_PASSWORD", "hunter2")
    settings = load_settings()
    shown = repr(settings) + str(settings.redacted())
    assert "sk-ant-secret" not in shown and "hunter2" not in shown
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-secret"


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.metrics_port = 1  # type: ignore[misc]


def test_check_environment_ignores_unrelated_variables() -> None:
    check_environment({"PATH": "/bin", "KAFKA_BOOTSTRAP": "x:1", "MODCASCADE_LOG_LEVEL": "debug"})
