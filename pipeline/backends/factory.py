"""``make_classifier``: build the configured backend and run the startup label check.

    classifier = make_classifier("vllm-http", settings.model.dir, policy, url=settings.model.server_url)
    await classifier.check()          # vllm-http only: the server is up and serves this model

The label check runs before any engine is loaded, so a model that does not fit the policy fails at once.
The heavy imports (torch, transformers, vllm) happen here, only for the backend asked for.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.backends.base import BACKENDS, Classifier, LabelMap, ModelInfo
from pipeline.errors import ConfigError
from pipeline.policy import Policy


def make_classifier(kind: str, model_dir: str | Path, policy: Policy, **options: Any) -> Classifier:
    """Build backend ``kind`` for the model at ``model_dir``; raises ModelMismatchError when its labels do
    not fit ``policy``'s taxonomy. ``options`` go to the backend's constructor:

    - ``transformers``: max_length, batch_size, threads, device, dtype, max_batch_tokens
    - ``vllm-local``: max_length, max_model_len, dtype, kv_cache_gib
    - ``vllm-http``: url (required), max_length, batch_size, timeout_s, retry, max_connections, transport
    """
    info = ModelInfo.from_dir(model_dir)
    LabelMap.for_policy(info.labels, policy)
    backend = _backend_class(kind)
    accepted = {name for name, p in inspect.signature(backend).parameters.items() if p.kind is p.KEYWORD_ONLY}
    if unknown := sorted(set(options) - accepted):
        raise ConfigError(f"backend {kind} takes no option {', '.join(unknown)}: "
                          f"it takes {', '.join(sorted(accepted))}")
    classifier: Classifier = backend(model_dir, **options)
    return classifier


def _backend_class(kind: str) -> Callable[..., Classifier]:
    if kind == "transformers":
        from pipeline.backends.transformers_backend import TransformersClassifier

        return TransformersClassifier
    if kind == "vllm-local":
        from pipeline.backends.vllm_local import VllmLocalClassifier

        return VllmLocalClassifier
    if kind == "vllm-http":
        from pipeline.backends.vllm_http import VllmHttpClassifier

        return VllmHttpClassifier
    raise ConfigError(f"unknown classifier backend {kind!r}: use one of {', '.join(BACKENDS)} "
                      "(MODCASCADE_MODEL_BACKEND)")
