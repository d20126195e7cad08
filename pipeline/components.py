"""Components built from settings: the one place that turns configuration into live parts.

    build_classifier      the configured model backend, checked against the policy's taxonomy
    build_adjudicator     every configured frontier provider behind one router
    configured_providers  which providers the settings can reach
    adjudication_limits   concurrency, rate, retries, breaker, backoff for the adjudication stage
    open_dataset          the retraining dataset folder (created, so a bad path fails at start)

Workers, the main job, batch and bench all build their parts here, so a setting means the same thing
everywhere.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.adjudication.anthropic_api import AnthropicAdjudicator
from pipeline.adjudication.backends import HOW_TO_CONFIGURE, Adjudicator, FrontierRouter
from pipeline.adjudication.limits import AdjudicationLimits
from pipeline.adjudication.openai_chat import OpenAIChatAdjudicator
from pipeline.backends import Classifier, make_classifier
from pipeline.dataset.store import DatasetStore
from pipeline.errors import SettingsError
from pipeline.policy import Policy, load_policy
from pipeline.retry import Backoff
from pipeline.settings import Settings


def build_classifier(settings: Settings, *, backend: str | None = None, model_dir: Path | None = None,
                     policy: Policy | None = None) -> Classifier:
    """The configured backend for the configured model (or the ones given), checked against the policy's
    taxonomy (default: the policy file of the settings)."""
    m = settings.model
    backend = backend or m.backend
    model_dir = model_dir or m.dir
    policy = policy or load_policy(settings.policy_path)
    if backend == "vllm-http":
        return make_classifier(backend, model_dir, policy, url=m.server_url, max_length=m.max_length,
                               batch_size=m.batch_size, timeout_s=m.timeout_s)
    if backend == "vllm-local":
        return make_classifier(backend, model_dir, policy, max_length=m.max_length)
    return make_classifier(backend, model_dir, policy, max_length=m.max_length, batch_size=m.batch_size,
                           threads=m.threads)


def configured_providers(settings: Settings) -> tuple[str, ...]:
    """The frontier providers these settings give an endpoint (and key, where one is needed) for."""
    providers = []
    if settings.anthropic_api_key is not None:
        providers.append("anthropic")
    if settings.adjudicator.openai_base_url:
        providers.append("openai")
    return tuple(providers)


def build_adjudicator(settings: Settings) -> FrontierRouter:
    """Every configured provider behind one router; the policy's ``adjudication.provider`` picks per request."""
    a = settings.adjudicator
    built: dict[str, Adjudicator] = {}
    if settings.anthropic_api_key is not None:
        built["anthropic"] = AnthropicAdjudicator(api_key=settings.anthropic_api_key.get_secret_value(),
                                                  base_url=a.base_url, timeout_s=a.timeout_s)
    if a.openai_base_url:
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key is not None else None
        built["openai"] = OpenAIChatAdjudicator(base_url=a.openai_base_url, api_key=key, timeout_s=a.timeout_s)
    if not built:
        raise SettingsError("no frontier model configured for the adjudicate worker: "
                            + "; or ".join(HOW_TO_CONFIGURE.values()))
    return FrontierRouter(built)


def adjudication_limits(settings: Settings) -> AdjudicationLimits:
    a = settings.adjudicator
    return AdjudicationLimits(
        concurrency=a.concurrency, rate_per_s=a.rate_per_s, burst=a.burst, max_attempts=a.max_attempts,
        breaker_failures=a.breaker_failures, breaker_reset_s=a.breaker_reset_s,
        backoff=Backoff(a.backoff_base_s, a.backoff_max_s),
    )


def open_dataset(settings: Settings) -> DatasetStore:
    """The dataset folder, created now so a path the worker cannot write fails at start, not on the first batch."""
    folder = settings.feedback.dataset_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cannot create the dataset folder {folder} ({exc.strerror}): set "
                            "MODCASCADE_FEEDBACK_DATASET_DIR to a writable folder") from exc
    return DatasetStore(folder)
