"""Adjudicators: the frontier model behind one small interface, so the worker is provider-neutral.

    Adjudicator         the protocol: ``await adjudicate(FrontierRequest) -> FrontierReply``
    AnthropicAdjudicator  Claude through the official ``anthropic`` SDK (Messages API, tool use, prompt caching)

Retries are NOT the SDK's: the client is built with ``max_retries=0`` and every failure is translated here
into :class:`FrontierTransient` (with the server's ``retry-after`` when it sent one) or
:class:`FrontierRejected`; the worker's own policy decides whether and when to try again, with a bounded
number of attempts, a circuit breaker and the budget (a spend-cap 429 must not be retried forever).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
from anthropic.types import MessageParam, TextBlockParam, ToolChoiceToolParam, ToolParam

from pipeline.adjudication.prompt import TOOL_NAME, FrontierRequest
from pipeline.errors import FrontierRejected, FrontierTransient


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


class AnthropicAdjudicator:
    provider = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout_s: float = 60.0) -> None:
        # Strict validation turns a 200 reply of the wrong shape into an error instead of None fields.
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s,
                                                _strict_response_validation=True)

    async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
        try:
            system: TextBlockParam = {"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}
            user: MessageParam = {"role": "user", "content": request.user}
            tool: ToolParam = {"name": request.tool["name"], "description": request.tool["description"],
                               "input_schema": request.tool["input_schema"]}
            choice: ToolChoiceToolParam = {"type": "tool", "name": TOOL_NAME}
            message = await self._client.messages.create(
                model=request.model, max_tokens=request.max_tokens, system=[system], messages=[user], tools=[tool],
                tool_choice=choice,
            )
        except anthropic.APITimeoutError as exc:
            raise FrontierTransient(f"the frontier call timed out: {exc}", kind="timeout") from exc
        except anthropic.APIConnectionError as exc:
            raise FrontierTransient(f"the frontier API is unreachable: {exc}", kind="connection") from exc
        except anthropic.APIStatusError as exc:
            raise _translate(exc) from exc
        except (anthropic.APIResponseValidationError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise FrontierTransient(f"the frontier API sent a malformed reply: {exc}", kind="malformed") from exc
        usage = message.usage
        return FrontierReply(
            content=[block.model_dump(mode="json") for block in message.content],
            stop_reason=message.stop_reason,
            usage=TokenUsage(
                input=usage.input_tokens,
                output=usage.output_tokens,
                cache_write=usage.cache_creation_input_tokens or 0,
                cache_read=usage.cache_read_input_tokens or 0,
            ),
            model=message.model,
            reply_id=message.id,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _translate(exc: anthropic.APIStatusError) -> FrontierTransient | FrontierRejected:
    status = exc.status_code
    retry_after = _retry_after(exc.response.headers)
    message = f"the frontier API answered HTTP {status}: {exc.message}"
    if status == 429:
        return FrontierTransient(message, kind="rate_limited", retry_after=retry_after)
    if status == 529:
        return FrontierTransient(message, kind="overloaded", retry_after=retry_after)
    if status >= 500 or status == 408:
        return FrontierTransient(message, kind="server_error", retry_after=retry_after)
    if status in (401, 403):
        return FrontierRejected(message + ": check the API key (MODCASCADE_ANTHROPIC_API_KEY)", kind="auth")
    if status == 404:
        return FrontierRejected(message + ": check the model id in the policy (adjudication.model) and the base URL",
                                kind="not_found")
    return FrontierRejected(message, kind="bad_request")


def _retry_after(headers: Any) -> float | None:
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
