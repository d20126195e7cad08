"""The scripted Messages API server against the real ``anthropic`` SDK: what the SDK sends, what it makes of
each scripted reply, and which exception each failure becomes (the adjudicator's error handling relies on
these classes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message, TextBlock, ToolParam, ToolUseBlock

from tests.anthropic_server import MessagesServer, Reply, Usage, user_text

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-6"  # not in the SDK's DEPRECATED_MODELS: a deprecated id warns, and warnings are errors
SYSTEM_TEXT = "You are a content moderator. Judge the post between the delimiters. " * 40
VERDICT = {"category": "spam", "decision": "block", "rationale": "Unsolicited advertising with a bait link."}
TOOL: ToolParam = {
    "name": "record_verdict",
    "description": "Record the moderation verdict for the post.",
    "input_schema": {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["safe", "spam", "harassment"]},
            "decision": {"type": "string", "enum": ["allow", "block", "review"]},
            "rationale": {"type": "string"},
        },
        "required": ["category", "decision", "rationale"],
    },
}


@pytest.fixture
async def server() -> AsyncIterator[MessagesServer]:
    async with MessagesServer() as started:
        yield started


@pytest.fixture
async def client(server: MessagesServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0) as sdk:
        yield sdk


async def classify(
    client: anthropic.AsyncAnthropic, post: str = "WIN a free phone!!! click here", *, timeout: float | None = None
) -> Message:
    return await client.messages.create(
        model=MODEL,
        max_tokens=512,
        system=[{"type": "text", "text": SYSTEM_TEXT, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": f"<<<POST a1b2c3d4e5f6>>>\n{post}\n<<<END POST a1b2c3d4e5f6>>>"}],
        tools=[TOOL],
        tool_choice={"type": "tool", "name": "record_verdict"},
        timeout=anthropic.NOT_GIVEN if timeout is None else timeout,
    )


async def test_tool_reply_is_parsed_into_a_message(server: MessagesServer, client: anthropic.AsyncAnthropic) -> None:
    server.script(Reply.tool(VERDICT, usage=Usage(input=1200, output=80, cache_write=1000, cache_read=0)))

    message = await classify(client)

    assert isinstance(message, Message)
    assert message.id == "msg_test_1"
    assert message.model == MODEL
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert isinstance(block, ToolUseBlock)
    assert block.name == "record_verdict"
    assert block.input == VERDICT
    assert message.usage.input_tokens == 1200
    assert message.usage.output_tokens == 80
    assert message.usage.cache_creation_input_tokens == 1000
    assert message.usage.cache_read_input_tokens == 0
    assert server.pending == 0


async def test_server_records_the_request_as_the_sdk_sent_it(
    server: MessagesServer, client: anthropic.AsyncAnthropic
) -> None:
    server.script(Reply.tool(VERDICT))

    await classify(client, "hello there")

    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    body = request.body
    assert body is not None
    assert body["model"] == MODEL
    assert body["max_tokens"] == 512
    assert body["system"] == [{"type": "text", "text": SYSTEM_TEXT, "cache_control": {"type": "ephemeral"}}]
    assert body["tools"] == [TOOL]
    assert body["tool_choice"] == {"type": "tool", "name": "record_verdict"}
    assert set(body) == {"model", "max_tokens", "system", "messages", "tools", "tool_choice"}  # no NotGiven noise
    assert "hello there" in request.user_text
    assert request.system_text == SYSTEM_TEXT
    # What the SDK puts on the wire besides the body.
    assert request.headers["authorization"] == "Bearer test"
    assert request.headers["anthropic-version"]
    assert request.headers["x-stainless-retry-count"] == "0"
    assert request.headers["content-type"] == "application/json"


async def test_simulated_usage_models_prompt_caching(server: MessagesServer, client: anthropic.AsyncAnthropic) -> None:
    server.default = Reply.tool(VERDICT)

    first = await classify(client, "first post")
    second = await classify(client, "a second, different post")
    other_system = await client.messages.create(
        model=MODEL,
        max_tokens=512,
        system=[{"type": "text", "text": SYSTEM_TEXT + "!", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "third"}],
        tools=[TOOL],
    )

    prefix = first.usage.cache_creation_input_tokens
    assert prefix is not None and prefix >= len(SYSTEM_TEXT) // 4  # tools + system, ~4 chars a token
    assert first.usage.cache_read_input_tokens == 0
    assert 0 < first.usage.input_tokens < 50  # only the user turn is outside the cached prefix
    assert first.usage.output_tokens == 60
    assert second.usage.cache_read_input_tokens == prefix
    assert second.usage.cache_creation_input_tokens == 0
    assert other_system.usage.cache_read_input_tokens == 0  # one byte of system prompt differs: a miss
    assert other_system.usage.cache_creation_input_tokens == prefix + 1
    assert [r.body["model"] for r in server.requests if r.body] == [MODEL] * 3
    assert len({m.id for m in (first, second, other_system)}) == 3


async def test_minimum_cacheable_prefix_is_not_cached() -> None:
    async with (
        MessagesServer(default=Reply.tool(VERDICT), min_cacheable_tokens=100_000) as strict,
        anthropic.AsyncAnthropic(base_url=strict.url, api_key="test", max_retries=0) as sdk,
    ):
        await classify(sdk)
        message = await classify(sdk)
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.input_tokens > len(SYSTEM_TEXT) // 4


async def test_rate_limit_raises_rate_limit_error_with_retry_after(
    server: MessagesServer, client: anthropic.AsyncAnthropic
) -> None:
    server.script(Reply.error(429, "rate_limit_error", retry_after=1.5))

    with pytest.raises(anthropic.RateLimitError) as caught:
        await classify(client)

    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "1.5"
    assert error.type == "rate_limit_error"
    assert error.request_id == "req_test_1"
    assert isinstance(error.body, dict) and error.body["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    ("status", "error_type", "exception"),
    [
        (529, "overloaded_error", anthropic.OverloadedError),
        (500, "api_error", anthropic.InternalServerError),
        (503, "overloaded_error", anthropic.ServiceUnavailableError),
        (400, "invalid_request_error", anthropic.BadRequestError),
    ],
)
async def test_errors_raise_the_sdk_class_for_their_status(
    server: MessagesServer,
    client: anthropic.AsyncAnthropic,
    status: int,
    error_type: str,
    exception: type[anthropic.APIStatusError],
) -> None:
    server.script(Reply.error(status, error_type))

    with pytest.raises(exception) as caught:
        await classify(client)

    assert caught.value.status_code == status
    assert caught.value.type == error_type
    if status >= 500:
        assert isinstance(caught.value, anthropic.InternalServerError)  # OverloadedError is one too


async def test_refusal_is_a_message_with_stop_reason_refusal(
    server: MessagesServer, client: anthropic.AsyncAnthropic
) -> None:
    server.script(Reply.refusal(), Reply.refusal("I can't", category="general_harms"))

    bare = await classify(client)
    with_text = await classify(client)

    assert bare.stop_reason == "refusal"
    assert bare.content == []
    assert bare.stop_details is not None and bare.stop_details.type == "refusal"
    assert with_text.stop_reason == "refusal"
    assert isinstance(with_text.content[0], TextBlock) and with_text.content[0].text == "I can't"
    assert with_text.stop_details is not None and with_text.stop_details.category == "general_harms"


async def test_text_and_max_tokens_replies_have_no_tool_call(
    server: MessagesServer, client: anthropic.AsyncAnthropic
) -> None:
    server.script(Reply.text("I think it's spam"), Reply.max_tokens())

    text = await classify(client)
    cut = await classify(client)

    assert text.stop_reason == "end_turn"
    assert [type(b) for b in text.content] == [TextBlock]
    assert cut.stop_reason == "max_tokens"
    assert not any(isinstance(b, ToolUseBlock) for b in cut.content)


async def test_slow_reply_times_out_the_client(server: MessagesServer, client: anthropic.AsyncAnthropic) -> None:
    server.script(Reply.tool(VERDICT, delay_s=5.0), Reply.tool(VERDICT))

    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        await classify(client, timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert isinstance(await classify(client), Message)  # the server still answers
    assert len(server.requests) == 2


async def test_stop_ends_a_pending_delay() -> None:
    """A server stopped while a reply is still delayed does not wait for it (and leaks no task)."""
    async with MessagesServer(Reply.tool(VERDICT, delay_s=30.0)) as slow:
        sdk = anthropic.AsyncAnthropic(base_url=slow.url, api_key="test", max_retries=0)
        call = asyncio.ensure_future(classify(sdk))
        await slow.wait_for_requests(1)
        started = time.monotonic()
        await slow.stop()
        assert time.monotonic() - started < 5.0
        with pytest.raises(anthropic.APIStatusError):  # the 529 sent while shutting down
            await call
        await sdk.close()


async def test_sdk_retries_honour_retry_after_ms(server: MessagesServer) -> None:
    """With retries on, the SDK waits ``retry-after-ms`` (it wins over ``retry-after``) and says which
    attempt this is in ``x-stainless-retry-count``."""
    server.script(Reply.error(429, retry_after=30, retry_after_ms=50), Reply.tool(VERDICT))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=1) as sdk:
        started = time.monotonic()
        message = await classify(sdk)
    assert time.monotonic() - started < 5.0
    assert message.stop_reason == "tool_use"
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]


async def test_responder_answers_per_post(server: MessagesServer, client: anthropic.AsyncAnthropic) -> None:
    def responder(body: dict[str, Any]) -> Reply:
        if "free phone" in user_text(body):
            return Reply.tool(VERDICT)
        return Reply.tool({"category": "safe", "decision": "allow", "rationale": "Harmless."})

    server.default = responder

    spam = await classify(client, "WIN a free phone now")
    fine = await classify(client, "Lovely weather today")

    assert isinstance(spam.content[0], ToolUseBlock) and spam.content[0].input["decision"] == "block"
    assert isinstance(fine.content[0], ToolUseBlock) and fine.content[0].input["decision"] == "allow"


async def test_async_responder_and_concurrency(server: MessagesServer, client: anthropic.AsyncAnthropic) -> None:
    async def responder(body: dict[str, Any]) -> Reply:
        await asyncio.sleep(0)
        return Reply.tool(VERDICT, delay_s=0.2)

    server.default = responder

    messages = await asyncio.gather(*(classify(client, f"post {i}") for i in range(4)))

    assert len({m.id for m in messages}) == 4
    assert server.peak_in_flight == 4
    assert server.in_flight == 0


async def test_exhausted_script_without_default_is_an_api_error(
    server: MessagesServer, client: anthropic.AsyncAnthropic
) -> None:
    with pytest.raises(anthropic.InternalServerError):
        await classify(client)
    assert server.unexpected == 1


async def test_invalid_requests_are_rejected_like_the_api(
    server: MessagesServer, client: anthropic.AsyncAnthropic
) -> None:
    server.default = Reply.tool(VERDICT)

    with pytest.raises(anthropic.BadRequestError, match="tool_choice"):
        await client.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            tools=[TOOL],
            tool_choice={"type": "tool", "name": "no_such_tool"},
        )
    with pytest.raises(anthropic.BadRequestError, match="first message"):
        await client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "assistant", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError, match="cache_control"):
        await client.messages.create(
            model=MODEL,
            max_tokens=10,
            system=[{"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)],
            messages=[{"role": "user", "content": "x"}],
        )
    assert len(server.requests) == 3


async def test_malformed_replies_and_unknown_paths(server: MessagesServer, client: anthropic.AsyncAnthropic) -> None:
    """What the SDK (default, non-strict validation) makes of broken answers: the caller must check."""
    server.script(
        Reply.raw(200, b'{"id": "msg_1", "type": "mess'),  # truncated JSON
        Reply.raw(200, b'{"unexpected": 1}'),  # JSON, wrong shape
        Reply.raw(502, "<html>Bad gateway</html>", content_type="text/html"),
    )

    with pytest.raises(ValueError):  # a bare json.JSONDecodeError, not an anthropic.AnthropicError
        await classify(client)
    shapeless = await classify(client)  # not validated: a Message whose fields are None
    assert isinstance(shapeless, Message) and shapeless.content is None and shapeless.usage is None
    with pytest.raises(anthropic.InternalServerError) as caught:
        await classify(client)
    assert caught.value.status_code == 502

    async with httpx2.AsyncClient() as http:
        response = await http.get(server.url + "/v1/models")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_strict_client_rejects_a_shapeless_reply(server: MessagesServer) -> None:
    server.script(Reply.raw(200, b'{"unexpected": 1}'))
    async with anthropic.AsyncAnthropic(
        base_url=server.url, api_key="test", max_retries=0, _strict_response_validation=True
    ) as strict:
        with pytest.raises(anthropic.APIResponseValidationError):
            await classify(strict)
