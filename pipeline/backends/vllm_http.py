"""Backend ``vllm-http``: the vLLM OpenAI-compatible server's ``POST /classify``.

How production runs: the model server is its own service (``modcascade serve-model``, see
:mod:`pipeline.serving`), the workers reach it over HTTP only. One pooled ``httpx.AsyncClient`` per
classifier; texts go in requests of at most ``batch_size`` texts and ``batch_tokens`` estimated tokens,
packed shortest first (long posts share requests with long posts, so they do not hold up the short ones, and
requests cost about the same), at most ``max_connections`` in flight, each with a request id (``X-Request-Id``
and the body's ``request_id``). Truncation is asked for in the request (``truncate_prompt_tokens``), so the
server keeps each post's head (see :mod:`pipeline.backends.base`).

Failures are translated here, at the boundary:

    connect error / timeout / 5xx   retried with jittered exponential backoff (``RetryPolicy``), then
                                    BackendUnavailable naming the URL and the fix
    404 (model not served)          ModelMismatchError
    other 4xx, malformed response   BackendError with the server's message

``await check()`` is the startup check: ``/health`` answers and ``/v1/models`` lists the expected model.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from pipeline import codec
from pipeline.backends.base import DEFAULT_MAX_LENGTH, LabelMap, ModelInfo, Scores, check_texts
from pipeline.errors import BackendError, BackendUnavailable, ConfigError, DecodeError, ModelMismatchError
from pipeline.retry import RetryPolicy

__all__ = ["RetryPolicy", "VllmHttpClassifier"]

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class _Retryable(Exception):
    """A failure worth another attempt; ``reason`` ends up in the final BackendUnavailable."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class VllmHttpClassifier:
    """A client of ``vllm.entrypoints.openai.api_server --runner pooling`` serving the model at ``model_dir``.

    ``model_dir`` gives the labels (id order), name and version; the server must serve that model under
    that name (:meth:`check`). ``transport`` is for tests (``httpx.MockTransport``).
    """

    backend: str = "vllm-http"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        url: str,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 64,
        batch_tokens: int = 4096,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        max_connections: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        info = ModelInfo.from_dir(model_dir)
        self.model_name = info.name
        self.model_version = info.version
        self.labels = info.labels
        self.url = url.rstrip("/")
        self._label_map = LabelMap(info.labels)
        self._max_length = max_length
        self._batch_size = batch_size
        self._batch_tokens = batch_tokens
        self._retry = retry or RetryPolicy()
        self._slots = asyncio.Semaphore(max_connections)
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Content-Type": "application/json"},
            transport=transport,
        )

    async def check(self) -> None:
        """Startup check: the server is healthy, serves this model, and its window fits ``max_length``."""
        await self._request("GET", "/health", None, "health")
        body = await self._request("GET", "/v1/models", None, "models")
        models = body.get("data") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise BackendError(f"model server at {self.url} answered /v1/models without a 'data' list: is it vLLM?")
        served = {str(m.get("id")): m for m in models if isinstance(m, dict)}
        if self.model_name not in served:
            names = ", ".join(sorted(served)) or "nothing"
            raise ModelMismatchError(f"model server at {self.url} is serving {names}, expected {self.model_name}: "
                                     f"restart serve-model with --model {self.model_name} or fix "
                                     "MODCASCADE_MODEL_DIR / MODCASCADE_MODEL_SERVER_URL")
        window = served[self.model_name].get("max_model_len")
        if isinstance(window, int) and window < self._max_length:
            raise ConfigError(f"MODCASCADE_MODEL_MAX_LENGTH={self._max_length} exceeds the server's max_model_len "
                              f"{window}: lower the setting or restart serve-model with a larger --max-model-len")

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        check_texts(texts)
        requests = self._requests(texts)
        if len(requests) <= 1:
            return await self._classify_batch(list(texts)) if requests else []
        try:
            async with asyncio.TaskGroup() as group:  # a failure cancels the other requests
                tasks = [group.create_task(self._classify_batch([texts[i] for i in request])) for request in requests]
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        results: list[Scores] = [{}] * len(texts)
        for request, task in zip(requests, tasks, strict=True):
            for i, scores in zip(request, task.result(), strict=True):
                results[i] = scores
        return results

    def _requests(self, texts: Sequence[str]) -> list[list[int]]:
        """Positions of ``texts`` per request: at most ``batch_size`` texts and ``batch_tokens`` estimated tokens
        (~4 UTF-8 bytes a token, at most ``max_length`` a text) each, packed shortest first."""
        cost = [min(self._max_length, len(text.encode("utf-8", "surrogatepass")) // 4 + 2) for text in texts]
        requests: list[list[int]] = []
        current: list[int] = []
        tokens = 0
        for i in sorted(range(len(texts)), key=cost.__getitem__):
            if current and (len(current) >= self._batch_size or tokens + cost[i] > self._batch_tokens):
                requests.append(current)
                current, tokens = [], 0
            current.append(i)
            tokens += cost[i]
        if current:
            requests.append(current)
        return requests

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _classify_batch(self, batch: list[str]) -> list[Scores]:
        request_id = f"modcascade-{uuid.uuid4().hex[:16]}"
        payload = {
            "model": self.model_name,
            "input": batch,
            "truncate_prompt_tokens": self._max_length,
            "request_id": request_id,
        }
        async with self._slots:
            body = await self._request("POST", "/classify", payload, request_id)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or len(data) != len(batch):
            got = len(data) if isinstance(data, list) else "no"
            raise BackendError(f"model server at {self.url} returned {got} results for {len(batch)} texts "
                               f"(request {request_id}): check the server version")
        rows: list[list[float] | None] = [None] * len(batch)
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            probs = item.get("probs") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(batch) or not isinstance(probs, list):
                raise BackendError(f"model server at {self.url} returned a malformed result (request {request_id}): "
                                   "check the server version")
            rows[index] = probs
        return [self._label_map.scores(row) for row in rows if row is not None]

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None, request_id: str) -> Any:
        """One call with retries; returns the decoded JSON body."""
        content = None if payload is None else codec.dumps(payload)
        reason = ""
        for attempt in range(self._retry.retries + 1):
            if attempt:
                delay = self._retry.delay(attempt - 1)
                log.warning("model server %s%s failed (%s); retry %d/%d in %.2f s [%s]", self.url, path, reason,
                            attempt, self._retry.retries, delay, request_id)
                await asyncio.sleep(delay)
            try:
                return await self._attempt(method, path, content, request_id)
            except _Retryable as exc:
                reason = exc.reason
        raise BackendUnavailable(f"model server at {self.url} is not reachable ({reason}, "
                                 f"{self._retry.retries + 1} attempts): start it with "
                                 "`modcascade serve-model --model DIR` or fix MODCASCADE_MODEL_SERVER_URL")

    async def _attempt(self, method: str, path: str, content: bytes | None, request_id: str) -> Any:
        try:
            response = await self._client.request(method, path, content=content,
                                                  headers={"X-Request-Id": request_id})
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        if response.status_code in _RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code == 404 and path == "/classify":
            raise ModelMismatchError(f"model server at {self.url} does not serve {self.model_name} "
                                     f"({_message(response)}): restart serve-model with --model "
                                     f"{self.model_name} or fix MODCASCADE_MODEL_SERVER_URL")
        if response.is_error:
            raise BackendError(f"model server at {self.url} rejected {method} {path} with HTTP "
                               f"{response.status_code} (request {request_id}): {_message(response)}")
        if not response.content:
            return None
        try:
            return codec.loads(response.content)
        except DecodeError as exc:
            raise BackendError(f"model server at {self.url} answered {path} with invalid JSON: is it vLLM?") from exc


def _message(response: httpx.Response) -> str:
    """The error message of a vLLM error body, else the start of the raw text, on one line."""
    try:
        body = codec.loads(response.content)
    except DecodeError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    text = error.get("message") if isinstance(error, dict) else None
    if not isinstance(text, str):
        text = response.text[:200]
    return " ".join(text.split())
