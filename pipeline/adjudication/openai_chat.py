"""An OpenAI-compatible chat API as the adjudicator: e.g. a larger self-hosted model on vLLM, through the
official ``openai`` SDK (Chat Completions, one forced function call).

The same :class:`~pipeline.adjudication.prompt.FrontierRequest` as for Claude: the system prompt from the policy,
the post as delimited data in the user turn, and the verdict tool as the one function the model must call
(``tool_choice`` names it; vLLM then constrains decoding to the function's JSON schema). The reply is mapped onto
Anthropic-shaped content blocks so that one checker (:mod:`pipeline.adjudication.answer`) judges every provider:

    message.tool_calls[i]        → {"type": "tool_use", "name": ..., "input": <parsed arguments>}
    arguments that are not JSON  → "input" is the raw string, which the checker rejects as out of schema
    message.content              → {"type": "text", "text": ...}
    message.refusal, finish_reason "content_filter"  → stop_reason "refusal"
    finish_reason "length"       → stop_reason "max_tokens"

Usage: ``prompt_tokens`` includes the cached prefix; the cached part (``prompt_tokens_details.cached_tokens``,
reported by OpenAI and by vLLM with ``--enable-prompt-tokens-details``) is priced as a cache read and the rest
as input. Chat APIs have no cache-write charge. Prices come from the policy, so a self-hosted judge is costed
at whatever ops put there.
"""

from __future__ import annotations

import json
from typing import Any

import openai
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionNamedToolChoiceParam,
    ChatCompletionToolParam,
)

from pipeline.adjudication.backends import FrontierReply, TokenUsage, sdk_errors
from pipeline.adjudication.prompt import FrontierRequest
from pipeline.errors import FrontierTransient

_STOP_REASON = {"length": "max_tokens", "content_filter": "refusal", "tool_calls": "tool_use", "stop": "end_turn",
                "function_call": "tool_use"}


class OpenAIChatAdjudicator:
    provider = "openai"

    def __init__(self, *, base_url: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        # vLLM started without --api-key accepts any key, but the SDK insists on one.
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=0,
                                          timeout=timeout_s, _strict_response_validation=True)

    async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": request.system},
            {"role": "user", "content": request.user},
        ]
        tool: ChatCompletionToolParam = {"type": "function", "function": {
            "name": request.tool["name"], "description": request.tool["description"],
            "parameters": request.tool["input_schema"]}}
        choice: ChatCompletionNamedToolChoiceParam = {"type": "function", "function": {"name": request.tool["name"]}}
        with sdk_errors(openai, key_hint="MODCASCADE_OPENAI_API_KEY"):
            completion = await self._client.chat.completions.create(
                model=request.model, messages=messages, tools=[tool], tool_choice=choice,
                max_completion_tokens=request.max_tokens, temperature=0.0,
            )
        if not completion.choices:
            raise FrontierTransient("the frontier API answered with no choices", kind="malformed")
        first = completion.choices[0]
        message = first.message
        content: list[dict[str, Any]] = []
        if message.content:
            content.append({"type": "text", "text": message.content})
        for call in message.tool_calls or ():
            if call.type == "function":
                content.append({"type": "tool_use", "id": call.id, "name": call.function.name,
                                "input": _arguments(call.function.arguments)})
        stop_reason = "refusal" if message.refusal else _STOP_REASON.get(first.finish_reason, first.finish_reason)
        return FrontierReply(content=content, stop_reason=stop_reason, usage=_usage(completion.usage),
                             model=completion.model, reply_id=completion.id)

    async def aclose(self) -> None:
        await self._client.close()


def _arguments(raw: str) -> Any:
    """The parsed arguments, or the raw text when they are not JSON (the answer checker rejects it)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays/objects nested past the parser's limit
        return raw


def _usage(usage: openai.types.CompletionUsage | None) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    return TokenUsage(input=max(0, usage.prompt_tokens - cached), output=usage.completion_tokens, cache_read=cached)
