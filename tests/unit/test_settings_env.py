"""Settings render themselves as environment variables, and those variables load back the same settings."""

from __future__ import annotations

import os
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from pipeline.errors import SettingsError
from pipeline.settings import Settings, _known_env_names, env_name, load_settings

pytestmark = pytest.mark.unit

_GROUP_NAMES = [name for name, field in Settings.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)]


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` is exactly ``env`` inside the block, and what it was before after it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def without_settings(environ: dict[str, str]) -> dict[str, str]:
    known = _known_env_names()
    return {k: v for k, v in environ.items() if not k.upper().startswith("MODCASCADE_") and k.upper() not in known}


def reloaded_from_to_env(settings: Settings) -> Settings:
    """Load settings from an environment holding nothing but ``settings.to_env()`` (and unrelated variables)."""
    with environment(without_settings(dict(os.environ)) | settings.to_env()):
        return load_settings()


def rich_settings() -> Settings:
    """Non-default values in every group: nested groups, paths (one with a space), None next to set values,
    secrets with characters a shell would mangle, literals, floats, booleans that differ from their default."""
    base = Settings()
    return base.model_copy(update={
        "kafka": base.kafka.model_copy(update={
            "bootstrap": "k1:9093,k2:9093", "idempotence": False, "acks": "1", "partitions": 12,
            "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc-moderation",
            "sasl_password": SecretStr("p@ss word=$HOME|'\"x"), "ssl_cafile": Path("/etc/kafka/ca.pem"),
            "ssl_certfile": Path("certs/client.pem"), "ssl_check_hostname": False}),
        "topics": base.topics.model_copy(update={"prefix": "staging.", "dead_letter": "dlq"}),
        "broker": base.broker.model_copy(update={"port": 29092, "binary": Path("/opt/tansu/bin/tansu")}),
        "model": base.model.model_copy(update={"dir": Path("models/with space/v2"), "backend": "transformers",
                                               "threads": 3, "timeout_s": 2.5}),
        "worker": base.worker.model_copy(update={"shadow_policy_path": Path("policies/strict.yaml"),
                                                 "cache_ttl_s": 0.125, "cache_entries": 0}),
        "adjudicator": base.adjudicator.model_copy(update={"openai_base_url": "http://judge:8000/v1",
                                                           "rate_per_s": 0.2}),
        "feedback": base.feedback.model_copy(update={"dataset_dir": Path("/data/dataset")}),
        "promote": base.promote.model_copy(update={"macro_f1_tolerance": 1e-05}),
        "batch": base.batch.model_copy(update={"backend": "vllm-http", "message_batch_max": 100_000}),
        "policy_path": Path("policies/strict.yaml"), "metrics_port": 0, "log_level": "debug",
        "anthropic_api_key": SecretStr("sk-ant-api03-xyz"), "openai_api_key": SecretStr("sk-openai"),
    })


def test_non_default_settings_in_every_group_round_trip() -> None:
    settings = rich_settings()

    env = settings.to_env()

    assert reloaded_from_to_env(settings) == settings
    assert {name.split("_")[1].lower() for name in env} >= {"kafka", "topic", "broker", "model", "worker",
                                                            "adjudicator", "feedback", "promote", "batch"}


def test_secrets_are_rendered_in_clear_under_their_prefixed_names() -> None:
    env = rich_settings().to_env()

    assert env["MODCASCADE_KAFKA_SASL_PASSWORD"] == "p@ss word=$HOME|'\"x"
    assert env["MODCASCADE_ANTHROPIC_API_KEY"] == "sk-ant-api03-xyz"
    assert env["MODCASCADE_KAFKA_BOOTSTRAP"] == "k1:9093,k2:9093"
    assert "KAFKA_BOOTSTRAP" not in env and "ANTHROPIC_API_KEY" not in env
    assert (env["MODCASCADE_KAFKA_IDEMPOTENCE"], env["MODCASCADE_KAFKA_SSL_CHECK_HOSTNAME"]) == ("false", "false")
    assert env["MODCASCADE_MODEL_DIR"] == "models/with space/v2"


def test_defaults_are_left_out_unless_asked_for_and_both_round_trip() -> None:
    settings = Settings()

    assert settings.to_env() == {}
    full = settings.to_env(defaults=True)
    with environment(without_settings(dict(os.environ)) | full):
        assert load_settings() == settings
    # every setting with a value is named; the unset ones (None) cannot be, no environment value reads as None
    unset = {env_name(type(group), name) for group in (settings, *(getattr(settings, g) for g in _GROUP_NAMES))
             for name, field in type(group).model_fields.items() if name not in _GROUP_NAMES and field.default is None}
    assert {"MODCASCADE_KAFKA_BOOTSTRAP", "MODCASCADE_ANTHROPIC_API_KEY", "MODCASCADE_MODEL_THREADS"} <= unset
    prefixed = {name for name in _known_env_names() if name.startswith("MODCASCADE_")}
    assert set(full) == prefixed - unset
    assert full["MODCASCADE_TOPIC_PREFIX"] == ""


def test_child_env_replaces_the_parents_settings_and_keeps_everything_else() -> None:
    """The parent runs with settings from its environment (aliases included); the child gets ``settings``, where
    some of those are back at their default or unset (None): nothing of the parent's configuration leaks."""
    parent = {"PATH": "/usr/bin", "HOME": "/home/m", "KAFKA_BOOTSTRAP": "parent:9092",
              "ANTHROPIC_API_KEY": "sk-parent", "MODCASCADE_KAFKA_PARTITIONS": "9", "modcascade_log_level": "error"}
    settings = Settings().model_copy(update={"max_text_bytes": 100})

    env = settings.child_env(parent)

    assert env == {"PATH": "/usr/bin", "HOME": "/home/m", "MODCASCADE_MAX_TEXT_BYTES": "100"}
    with environment(env):
        loaded = load_settings()
    assert loaded == settings
    assert (loaded.kafka.bootstrap, loaded.anthropic_api_key, loaded.kafka.partitions) == (None, None, 4)


def test_a_none_that_the_environment_cannot_express_is_refused() -> None:
    settings = Settings()
    broken = settings.model_copy(update={"model": settings.model.model_copy(update={"server_url": None})})

    with pytest.raises(SettingsError, match="MODCASCADE_MODEL_SERVER_URL is None"):
        broken.to_env()


# -- any valid value of any setting round-trips ------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=30)


def _strategy(field: FieldInfo) -> st.SearchStrategy[Any]:
    annotation = field.annotation
    optional = get_origin(annotation) in (Union, types.UnionType)
    if optional:
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    bounds = {attr: getattr(c, attr) for c in field.metadata for attr in ("ge", "gt", "le", "lt")
              if getattr(c, attr, None) is not None}
    strategy: st.SearchStrategy[Any]
    if get_origin(annotation) is Literal:
        strategy = st.sampled_from(get_args(annotation))
    elif annotation is bool:
        strategy = st.booleans()
    elif annotation is int:  # the default half the time: settings validated against each other stay valid often
        strategy = st.one_of(st.just(field.default), st.integers(min_value=bounds.get("ge", bounds.get("gt", -1) + 1),
                                                                 max_value=bounds.get("le", 10**9)))
    elif annotation is float:
        strategy = st.one_of(st.just(field.default), st.floats(min_value=bounds.get("ge", bounds.get("gt", 0.0)),
                                                               max_value=1e9, exclude_min="gt" in bounds,
                                                               allow_nan=False))
    elif annotation is SecretStr:
        strategy = _TEXT.map(SecretStr)
    elif annotation is Path:
        strategy = _TEXT.map(Path)
    else:
        assert annotation is str, annotation
        strategy = _TEXT
    return st.one_of(st.none(), strategy) if optional else strategy


def _group(cls: type[BaseSettings], fixed: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: st.just(fixed[name]) if name in fixed else _strategy(field)
                                  for name, field in cls.model_fields.items()})


# Kafka's security fields depend on each other (validated together): draw a complete, consistent set.
_SECURITY = st.one_of(
    st.fixed_dictionaries({"security_protocol": st.just("PLAINTEXT"), "sasl_mechanism": st.none(),
                           "sasl_username": st.none(), "sasl_password": st.none(), "ssl_certfile": st.none(),
                           "ssl_keyfile": st.none()}),
    st.fixed_dictionaries({"security_protocol": st.just("SASL_SSL"),
                           "sasl_mechanism": st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]),
                           "sasl_username": _TEXT, "sasl_password": _TEXT.map(SecretStr),
                           "ssl_certfile": _TEXT.map(Path), "ssl_keyfile": st.one_of(st.none(), _TEXT.map(Path))}),
)


def _valid(cls: type[BaseSettings], values: dict[str, Any]) -> bool:
    """Whether the group's own validators accept ``values`` (checked without any environment)."""
    try:
        cls.model_validate(values, by_name=True)
    except ValidationError:
        return False
    return True


_TEMPLATE = Settings.model_construct()  # every field is drawn below; this only gives the groups' types


@st.composite
def any_settings(draw: st.DrawFn) -> Settings:
    base = _TEMPLATE
    update: dict[str, Any] = {}
    for name in _GROUP_NAMES:
        group = getattr(base, name)
        fixed = draw(_SECURITY) if name == "kafka" else {}
        values = draw(_group(type(group), fixed))
        if not _valid(type(group), values):  # cross-field rules of the group: keep its defaults instead of
            values = fixed                     # rejecting the whole draw (rejections made this test crawl)
        update[name] = group.model_copy(update=values)
    top = {name: field for name, field in Settings.model_fields.items() if name not in _GROUP_NAMES}
    update |= {name: draw(_strategy(field)) for name, field in top.items()}
    return base.model_copy(update=update)


@hypothesis_settings(max_examples=20, deadline=None)
@given(any_settings())
def test_any_valid_settings_round_trip(settings: Settings) -> None:
    with environment(settings.child_env(dict(os.environ))):
        assert load_settings() == settings
