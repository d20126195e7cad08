"""Adjudicators: the frontier model behind one small interface, so the worker is provider-neutral.

    Adjudicator      the protocol: ``await adjudicate(FrontierRequest) -> FrontierReply``
    FrontierRouter   sends each request to the adjudicator of its policy's ``adjudication.provider``
    status_error     one HTTP error → FrontierTransient / FrontierRejected, the same for every provider

The providers (:mod:`~pipeline.adjudication.anthropic_api`, :mod:`~pipeline.adjudication.openai_chat`) map a
:class:`~pipeline.adjudication.prompt.FrontierRequest` onto their API and the answer back onto a
:class:`FrontierReply` whose content blocks have Anthropic's shape (``tool_use`` with ``name`` and ``input``,
``text``), which is what :mod:`pipeline.adjudication.answer` checks.

Retries are never the SDKs': clients are built with ``max_retries=0`` and every failure is translated into
:class:`FrontierTransient` (with the server's ``retry-after`` when it sent one) or :class:`FrontierRejected`;
the stage's own policy decides whether and when to try again, with a bounded number of attempts, a circuit
breaker and the budget (a spend-cap 429 must not be retried forever).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from pipeline.adjudication.prompt import FrontierRequest
from pipeline.errors import FrontierRejected, FrontierTransient

NOT_CONFIGURED = "not_configured"
"""FrontierRejected kind: the policy names a provider this worker has no endpoint or key for."""


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens of one call. ``input`` excludes the cached ones (Anthropic's convention)."""

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_read: int = 0


@dataclass(frozen=True, slots=True)
class FrontierReply:
    content: list[dict[str, Any]]
    """Content blocks as plain dicts (``type``; ``name`` and ``input`` for tool use; ``text`` for text)."""
    stop_reason: str | None
    usage: TokenUsage
    model: str
    reply_id: str


class Adjudicator(Protocol):
    provider: str

    async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
        """One call; raises FrontierTransient or FrontierRejected."""
        ...

    async def aclose(self) -> None: ...


HOW_TO_CONFIGURE: Mapping[str, str] = {
    "anthropic": "set MODCASCADE_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY)",
    "openai": "set MODCASCADE_ADJUDICATOR_OPENAI_BASE_URL (e.g. http://judge:8000/v1 for a vLLM server) and, if "
              "the server wants one, MODCASCADE_OPENAI_API_KEY",
}


class FrontierRouter:
    """Dispatches on :attr:`FrontierRequest.provider`, so a policy edit can move adjudication to another provider
    without a restart, as long as the worker was given that provider's endpoint."""

    provider = "router"

    def __init__(self, adjudicators: Mapping[str, Adjudicator]) -> None:
        self._by_provider = dict(adjudicators)

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._by_provider)

    def check(self, provider: str) -> None:
        """Raise FrontierRejected(not_configured) when ``provider`` cannot be served, saying how to configure it."""
        if provider not in self._by_provider:
            have = ", ".join(self._by_provider) or "none"
            raise FrontierRejected(f"the policy's adjudication.provider is {provider!r} but this worker is configured "
                                   f"for: {have}; {HOW_TO_CONFIGURE.get(provider, 'configure it')}",
                                   kind=NOT_CONFIGURED)

    async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
        self.check(request.provider)
        return await self._by_provider[request.provider].adjudicate(request)

    async def aclose(self) -> None:
        for adjudicator in self._by_provider.values():
            await adjudicator.aclose()


@contextlib.contextmanager
def sdk_errors(sdk: ModuleType, *, key_hint: str) -> Iterator[None]:
    """Translate the exceptions of an official SDK (``anthropic`` and ``openai`` name theirs alike) into ours."""
    try:
        yield
    except sdk.APITimeoutError as exc:
        raise FrontierTransient(f"the frontier call timed out: {exc}", kind="timeout") from exc
    except sdk.APIConnectionError as exc:
        raise FrontierTransient(f"the frontier API is unreachable: {exc}", kind="connection") from exc
    except sdk.APIStatusError as exc:
        raise status_error(exc.status_code, exc.response.headers, exc.message, key_hint=key_hint) from exc
    except (sdk.APIResponseValidationError, ValueError) as exc:  # ValueError: a body that is not JSON
        raise FrontierTransient(f"the frontier API sent a malformed reply: {exc}", kind="malformed") from exc


def status_error(status: int, headers: Mapping[str, str], detail: str, *, key_hint: str
                 ) -> FrontierTransient | FrontierRejected:
    """The error for an HTTP ``status`` from a frontier API. 429, 529 (Anthropic's overloaded), 408 and 5xx are
    transient; 401/403 and 404 are fatal configuration errors; any other 4xx rejects this one request."""
    retry_after = retry_after_s(headers)
    message = f"the frontier API answered HTTP {status}: {detail}"
    if status == 429:
        return FrontierTransient(message, kind="rate_limited", retry_after=retry_after)
    if status == 529:
        return FrontierTransient(message, kind="overloaded", retry_after=retry_after)
    if status >= 500 or status == 408:
        return FrontierTransient(message, kind="server_error", retry_after=retry_after)
    if status in (401, 403):
        return FrontierRejected(f"{message}: check the API key ({key_hint})", kind="auth")
    if status == 404:
        return FrontierRejected(message + ": check the model id in the policy (adjudication.model) and the base URL",
                                kind="not_found")
    return FrontierRejected(message, kind="bad_request")


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds; an HTTP date is ignored)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if 0 <= seconds <= 3600:
            return seconds
    return None
