"""Claude through the official ``anthropic`` SDK: Messages API, one forced tool, the system prompt cached.

The client is built with ``max_retries=0`` (the stage retries, see :mod:`pipeline.adjudication.backends`) and
``_strict_response_validation=True``, which turns a 200 reply of the wrong shape into an error instead of
``None`` fields.
"""

from __future__ import annotations

import anthropic
from anthropic.types import (
    Message,
    MessageParam,
    TextBlockParam,
    ToolChoiceToolParam,
    ToolParam,
)
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming

from pipeline.adjudication.backends import FrontierReply, TokenUsage, sdk_errors
from pipeline.adjudication.prompt import TOOL_NAME, FrontierRequest

KEY_HINT = "MODCASCADE_ANTHROPIC_API_KEY"


def message_params(request: FrontierRequest) -> MessageCreateParamsNonStreaming:
    """The Messages API parameters of one request: the same for a direct call and inside a Message Batch."""
    system: TextBlockParam = {"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}
    user: MessageParam = {"role": "user", "content": request.user}
    tool: ToolParam = {"name": request.tool["name"], "description": request.tool["description"],
                       "input_schema": request.tool["input_schema"]}
    choice: ToolChoiceToolParam = {"type": "tool", "name": TOOL_NAME}
    return {"model": request.model, "max_tokens": request.max_tokens, "system": [system], "messages": [user],
            "tools": [tool], "tool_choice": choice}


def reply_of(message: Message) -> FrontierReply:
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


class AnthropicAdjudicator:
    provider = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout_s: float = 60.0) -> None:
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s,
                                                _strict_response_validation=True)

    async def adjudicate(self, request: FrontierRequest) -> FrontierReply:
        with sdk_errors(anthropic, key_hint=KEY_HINT):
            message = await self._client.messages.create(**message_params(request))
        return reply_of(message)

    async def aclose(self) -> None:
        await self._client.close()
