"""The scripted Messages API server against the real ``anthropic`` SDK: what the SDK sends, what it makes of
each scripted reply, and which exception each failure becomes (the adjudicator's error handling relies on
these classes)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import httpx2
import pytest
from anthropic.types import Message, TextBlock, ToolParam, ToolUseBlock
from anthropic.types.messages import (
    MessageBatch,
    MessageBatchCanceledResult,
    MessageBatchErroredResult,
    MessageBatchExpiredResult,
    MessageBatchIndividualResponse,
    MessageBatchSucceededResult,
)
from anthropic.types.messages.batch_create_params import Request

from tests.support.frontier import MessagesServer, Reply, Usage, user_text

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


# -- Message Batches --------------------------------------------------------------------------------------


@pytest.fixture
async def strict_client(server: MessagesServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    """As our code builds it: responses that do not match the SDK's types fail loudly."""
    async with anthropic.AsyncAnthropic(
        base_url=server.url, api_key="test", max_retries=0, _strict_response_validation=True
    ) as sdk:
        yield sdk


def batch_request(custom_id: str, post: str = "WIN a free phone!!! click here") -> Request:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 512,
            "system": [{"type": "text", "text": SYSTEM_TEXT, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": f"<<<POST>>>\n{post}\n<<<END POST>>>"}],
            "tools": [TOOL],
            "tool_choice": {"type": "tool", "name": "record_verdict"},
        },
    }


def verdict(decision: str) -> dict[str, str]:
    return {"category": "spam", "decision": decision, "rationale": f"Decided: {decision}."}


async def batch_results(client: anthropic.AsyncAnthropic, batch_id: str) -> dict[str, MessageBatchIndividualResponse]:
    """The results of a batch as the SDK streams them, by custom_id (asserting each comes once)."""
    results: dict[str, MessageBatchIndividualResponse] = {}
    async for line in await client.messages.batches.results(batch_id):
        assert line.custom_id not in results
        results[line.custom_id] = line
    return results


def counts(batch: MessageBatch) -> dict[str, int]:
    return batch.request_counts.model_dump()


async def test_batch_is_created_polled_to_its_end_and_its_results_match_on_custom_id(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    server.script_batch(Reply.tool(verdict("block")), Reply.tool(verdict("allow")), Reply.tool(verdict("review")))
    ids = ["post-a", "post-b", "post-c"]

    created = await strict_client.messages.batches.create(requests=[batch_request(i, f"post {i}") for i in ids])

    assert created.id == "msgbatch_test_1"
    assert created.type == "message_batch"
    assert created.processing_status == "in_progress"
    assert counts(created) == {"processing": 3, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    assert created.expires_at - created.created_at == timedelta(hours=24)
    assert abs(created.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert (created.ended_at, created.cancel_initiated_at, created.archived_at, created.results_url) == (None,) * 4
    assert server.batch_pending == 3  # nothing is answered before the batch ends

    polled = await strict_client.messages.batches.retrieve(created.id)  # batch_polls_to_end = 1
    ended = await strict_client.messages.batches.retrieve(created.id)

    assert polled.processing_status == "in_progress"
    assert ended.processing_status == "ended"
    assert ended.ended_at is not None and ended.ended_at >= ended.created_at
    assert counts(ended) == {"processing": 0, "succeeded": 3, "errored": 0, "canceled": 0, "expired": 0}
    assert ended.results_url == f"{server.url}/v1/messages/batches/{created.id}/results"
    assert server.batch_pending == 0

    lines = [line async for line in await strict_client.messages.batches.results(created.id)]

    assert [line.custom_id for line in lines] == ids[::-1]  # not in submission order
    by_id = {line.custom_id: line.result for line in lines}
    for custom_id, decision in zip(ids, ["block", "allow", "review"], strict=True):
        result = by_id[custom_id]
        assert isinstance(result, MessageBatchSucceededResult)
        assert result.message.model == MODEL and result.message.stop_reason == "tool_use"
        [block] = result.message.content
        assert isinstance(block, ToolUseBlock) and block.name == "record_verdict"
        assert block.input == verdict(decision)
    # Simulated usage and prompt caching, as for /v1/messages: the shared prefix is written once, then read.
    first, second = (by_id[i] for i in ids[:2])
    assert isinstance(first, MessageBatchSucceededResult) and isinstance(second, MessageBatchSucceededResult)
    assert first.message.usage.cache_creation_input_tokens
    assert second.message.usage.cache_read_input_tokens == first.message.usage.cache_creation_input_tokens

    record = server.batches[created.id]
    assert record.custom_ids == ids and record.ended
    assert record.outcomes == dict.fromkeys(ids, "succeeded")
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/v1/messages/batches"),
        ("GET", f"/v1/messages/batches/{created.id}"),
        ("GET", f"/v1/messages/batches/{created.id}"),
        ("GET", f"/v1/messages/batches/{created.id}"),  # results() retrieves the batch first
        ("GET", f"/v1/messages/batches/{created.id}/results"),
    ]
    create_body = server.requests[0].body
    assert create_body is not None and create_body["requests"][0] == batch_request("post-a", "post post-a")
    assert server.requests[-1].headers["accept"] == "application/binary"
    assert server.requests[-1].headers["anthropic-version"]


async def test_results_lines_validate_strictly_against_the_sdk_types(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    """The SDK decodes JSONL lines without validation, so check every result kind's shape here."""
    server.batch_polls_to_end = 0
    server.script_batch(
        Reply.tool(verdict("block")), Reply.refusal("no", category="general_harms"), Reply.error(529), Reply.expired()
    )
    ids = ["ok", "refused", "failed", "late", "dropped"]
    batch = await strict_client.messages.batches.create(requests=[batch_request(i) for i in ids])
    await strict_client.messages.batches.retrieve(batch.id)
    server.script_batch(Reply.canceled())  # too late for this batch: it has ended
    assert server.batches[batch.id].outcomes["dropped"] == "errored"  # no script left, no default
    assert server.unexpected == 1

    async with httpx2.AsyncClient() as http:
        response = await http.get(
            f"{server.url}/v1/messages/batches/{batch.id}/results",
            headers={"x-api-key": "test", "anthropic-version": "2023-06-01"},
        )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-jsonl"  # no Accept: application/binary
    lines = response.text.splitlines()
    assert len(lines) == len(ids) and response.text.endswith("\n")
    parsed = [MessageBatchIndividualResponse.model_validate(json.loads(line), strict=False) for line in lines]
    assert {p.custom_id: p.result.type for p in parsed} == {
        "ok": "succeeded",
        "refused": "succeeded",
        "failed": "errored",
        "late": "expired",
        "dropped": "errored",
    }
    refused = next(p.result for p in parsed if p.custom_id == "refused")
    assert isinstance(refused, MessageBatchSucceededResult) and refused.message.stop_reason == "refusal"


async def test_batch_with_partial_failures(server: MessagesServer, strict_client: anthropic.AsyncAnthropic) -> None:
    server.batch_polls_to_end = 0
    server.script_batch(
        Reply.tool(verdict("block")),
        Reply.error(529, "overloaded_error"),
        Reply.error(500, "api_error", "boom"),
        Reply.expired(),  # the invalid request before it consumes no reply
        Reply.canceled(),
    )
    invalid = batch_request("bad-params")
    invalid["params"]["messages"] = [{"role": "assistant", "content": "first turn from the assistant"}]
    requests = [batch_request("ok"), batch_request("overloaded"), batch_request("internal"), invalid]
    requests += [batch_request("late"), batch_request("dropped")]

    batch = await strict_client.messages.batches.create(requests=requests)
    ended = await strict_client.messages.batches.retrieve(batch.id)
    results = await batch_results(strict_client, batch.id)

    assert ended.processing_status == "ended"
    assert counts(ended) == {"processing": 0, "succeeded": 1, "errored": 3, "canceled": 1, "expired": 1}
    assert isinstance(results["ok"].result, MessageBatchSucceededResult)
    errors: dict[str, tuple[str, str]] = {}
    for custom_id in ("overloaded", "internal", "bad-params"):
        result = results[custom_id].result
        assert isinstance(result, MessageBatchErroredResult)
        assert result.error.type == "error" and result.error.request_id
        errors[custom_id] = (result.error.error.type, result.error.error.message)
    assert errors["overloaded"] == ("overloaded_error", "Overloaded")
    assert errors["internal"] == ("api_error", "boom")
    assert errors["bad-params"][0] == "invalid_request_error" and "first message" in errors["bad-params"][1]
    assert isinstance(results["late"].result, MessageBatchExpiredResult)
    assert isinstance(results["dropped"].result, MessageBatchCanceledResult)
    assert server.batch_pending == 0 and server.unexpected == 0


async def test_batch_answers_come_from_script_then_batch_default_then_default(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    server.batch_polls_to_end = 0
    server.default = Reply.tool(verdict("review"))
    server.script_batch(Reply.tool(verdict("block")))

    def per_post(params: dict[str, Any]) -> Reply:
        return Reply.tool(verdict("allow" if "lovely" in user_text(params) else "block"))

    server.batch_default = per_post
    first = await strict_client.messages.batches.create(
        requests=[batch_request("scripted"), batch_request("fine", "lovely day"), batch_request("spam")]
    )
    await strict_client.messages.batches.retrieve(first.id)
    server.batch_default = None
    second = await strict_client.messages.batches.create(requests=[batch_request("from-default")])
    await strict_client.messages.batches.retrieve(second.id)

    decisions: dict[str, Any] = {}
    for batch_id in (first.id, second.id):
        for custom_id, line in (await batch_results(strict_client, batch_id)).items():
            assert isinstance(line.result, MessageBatchSucceededResult)
            block = line.result.message.content[0]
            assert isinstance(block, ToolUseBlock)
            decisions[custom_id] = block.input["decision"]
    assert decisions == {"scripted": "block", "fine": "allow", "spam": "block", "from-default": "review"}


async def test_held_batches_stay_in_progress_until_expired(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    server.hold_batches = True
    server.batch_default = Reply.tool(verdict("block"))
    first = await strict_client.messages.batches.create(requests=[batch_request("a"), batch_request("b")])
    second = await strict_client.messages.batches.create(requests=[batch_request("c")])
    for _ in range(3):
        assert (await strict_client.messages.batches.retrieve(first.id)).processing_status == "in_progress"

    expired = await server.expire_batches()

    assert [record.id for record in expired] == [first.id, second.id]
    assert await server.expire_batches() == []  # nothing open any more
    ended = await strict_client.messages.batches.retrieve(first.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert counts(ended) == {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 2}
    results = await batch_results(strict_client, second.id)
    assert [type(line.result) for line in results.values()] == [MessageBatchExpiredResult]


async def test_end_batches_ends_held_batches_now(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    server.hold_batches = True
    server.batch_default = Reply.tool(verdict("allow"))
    first = await strict_client.messages.batches.create(requests=[batch_request("a")])
    second = await strict_client.messages.batches.create(requests=[batch_request("b")])

    assert [r.id for r in await server.end_batches(second.id)] == [second.id]
    assert (await strict_client.messages.batches.retrieve(first.id)).processing_status == "in_progress"
    assert (await strict_client.messages.batches.retrieve(second.id)).processing_status == "ended"
    assert [r.id for r in await server.end_batches()] == [first.id]
    assert server.batches[first.id].outcomes == {"a": "succeeded"}


async def test_cancel_ends_the_batch_with_its_requests_canceled(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    server.batch_polls_to_end = 5
    server.script_batch(Reply.tool(verdict("block")))
    batch = await strict_client.messages.batches.create(requests=[batch_request("a"), batch_request("b")])

    canceling = await strict_client.messages.batches.cancel(batch.id)

    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None and canceling.ended_at is None
    assert counts(canceling)["processing"] == 2
    again = await strict_client.messages.batches.cancel(batch.id)  # still canceling: no change
    assert again.cancel_initiated_at == canceling.cancel_initiated_at
    ended = await strict_client.messages.batches.retrieve(batch.id)  # the next progress step ends it
    assert ended.processing_status == "ended"
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at
    assert counts(ended) == {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 2, "expired": 0}
    results = await batch_results(strict_client, batch.id)
    assert all(isinstance(line.result, MessageBatchCanceledResult) for line in results.values())
    assert server.batch_pending == 1 and server.unexpected == 0  # nothing ran
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        await strict_client.messages.batches.cancel(batch.id)


async def test_list_pages_newest_first(server: MessagesServer, strict_client: anthropic.AsyncAnthropic) -> None:
    for i in range(5):
        await strict_client.messages.batches.create(requests=[batch_request(f"r{i}")])
    newest_first = [f"msgbatch_test_{n}" for n in range(5, 0, -1)]

    page = await strict_client.messages.batches.list(limit=2)
    everything = [batch.id async for batch in strict_client.messages.batches.list(limit=2)]
    default_page = await strict_client.messages.batches.list()
    older = await strict_client.messages.batches.list(before_id="msgbatch_test_2", limit=2)
    newest = await older.get_next_page()

    assert [b.id for b in page.data] == newest_first[:2]
    assert (page.has_more, page.first_id, page.last_id) == (True, "msgbatch_test_5", "msgbatch_test_4")
    assert everything == newest_first  # the SDK followed after_id = last_id
    assert [r.query for r in server.requests if r.method == "GET"][1:4] == [
        {"limit": "2"},
        {"limit": "2", "after_id": "msgbatch_test_4"},
        {"limit": "2", "after_id": "msgbatch_test_2"},
    ]
    assert [b.id for b in default_page.data] == newest_first and default_page.has_more is False
    assert [b.id for b in older.data] == ["msgbatch_test_4", "msgbatch_test_3"] and older.has_more
    assert [b.id for b in newest.data] == ["msgbatch_test_5"] and newest.has_more is False
    assert all(b.processing_status == "in_progress" for b in default_page.data)  # listing is no progress step
    with pytest.raises(anthropic.BadRequestError, match="limit"):
        await strict_client.messages.batches.list(limit=0)


async def test_scripted_batch_api_failures(server: MessagesServer, strict_client: anthropic.AsyncAnthropic) -> None:
    server.batch_default = Reply.tool(verdict("block"))
    server.script_batch_api(Reply.error(529, "overloaded_error", retry_after=3))

    with pytest.raises(anthropic.APIStatusError) as caught:
        await strict_client.messages.batches.create(requests=[batch_request("a")])

    assert isinstance(caught.value, anthropic.InternalServerError)  # OverloadedError, a 5xx
    assert caught.value.status_code == 529 and caught.value.type == "overloaded_error"
    assert caught.value.response.headers["retry-after"] == "3"
    assert server.batches == {}

    batch = await strict_client.messages.batches.create(requests=[batch_request("a")])
    server.script_batch_api(Reply.error(500))
    with pytest.raises(anthropic.InternalServerError) as failed:
        await strict_client.messages.batches.retrieve(batch.id)
    assert failed.value.status_code == 500 and failed.value.type == "api_error"
    # The failed call was no poll: still one in_progress report before the end.
    assert (await strict_client.messages.batches.retrieve(batch.id)).processing_status == "in_progress"
    assert server.batch_api_pending == 0

    server.script_batch_api(Reply.error(529, retry_after_ms=10))
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=1) as retrying:
        ended = await retrying.messages.batches.retrieve(batch.id)  # retried after 10 ms
    assert ended.processing_status == "ended"
    assert [r.headers["x-stainless-retry-count"] for r in server.requests[-2:]] == ["0", "1"]
    with pytest.raises(ValueError, match="script_batch_api"):
        server.script_batch_api(Reply.tool(verdict("block")))


async def test_results_before_the_end_are_refused(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    server.hold_batches = True
    server.batch_default = Reply.tool(verdict("block"))
    batch = await strict_client.messages.batches.create(requests=[batch_request("a")])

    with pytest.raises(anthropic.AnthropicError, match="results_url") as caught:  # the SDK checks first
        await strict_client.messages.batches.results(batch.id)
    assert not isinstance(caught.value, anthropic.APIStatusError)
    async with httpx2.AsyncClient() as http:
        response = await http.get(
            f"{server.url}/v1/messages/batches/{batch.id}/results",
            headers={"x-api-key": "test", "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "not finished processing" in response.json()["error"]["message"]

    await server.end_batches()
    assert list(await batch_results(strict_client, batch.id)) == ["a"]


async def test_unknown_batch_id_is_not_found(server: MessagesServer, strict_client: anthropic.AsyncAnthropic) -> None:
    for call in (
        strict_client.messages.batches.retrieve,
        strict_client.messages.batches.cancel,
        strict_client.messages.batches.results,
    ):
        with pytest.raises(anthropic.NotFoundError) as caught:
            await call("msgbatch_nope")
        assert caught.value.type == "not_found_error"
    async with httpx2.AsyncClient() as http:
        response = await http.get(
            f"{server.url}/v1/messages/batches/msgbatch_nope/results",
            headers={"x-api-key": "test", "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 404


async def test_invalid_batches_are_rejected_at_creation(
    server: MessagesServer, strict_client: anthropic.AsyncAnthropic
) -> None:
    batches = strict_client.messages.batches
    with pytest.raises(anthropic.BadRequestError, match="at least one request"):
        await batches.create(requests=[])
    with pytest.raises(anthropic.BadRequestError, match="must match"):
        await batches.create(requests=[batch_request("has space")])
    with pytest.raises(anthropic.BadRequestError, match="must match"):
        await batches.create(requests=[batch_request("x" * 65)])
    with pytest.raises(anthropic.BadRequestError, match="unique"):
        await batches.create(requests=[batch_request("same"), batch_request("same")])
    assert (await batches.create(requests=[batch_request("x" * 64)])).processing_status == "in_progress"

    headers = {"x-api-key": "test", "anthropic-version": "2023-06-01"}
    url = f"{server.url}/v1/messages/batches"
    async with httpx2.AsyncClient() as http:
        no_id = await http.post(url, json={"requests": [{"params": batch_request("a")["params"]}]}, headers=headers)
        no_requests = await http.post(url, json={}, headers=headers)
        no_version = await http.post(url, json={"requests": [batch_request("a")]}, headers={"x-api-key": "test"})
        no_key = await http.get(url, headers={"anthropic-version": "2023-06-01"})
    assert no_id.status_code == 400 and "custom_id: Field required" in no_id.json()["error"]["message"]
    assert no_requests.status_code == 400
    assert no_version.status_code == 400 and "anthropic-version" in no_version.json()["error"]["message"]
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    assert list(server.batches) == ["msgbatch_test_1"]


async def test_batch_only_replies_are_unexpected_on_messages(
    server: MessagesServer, client: anthropic.AsyncAnthropic
) -> None:
    server.script(Reply.expired(), Reply.canceled())

    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError, match="batch requests only"):
            await classify(client)

    assert server.unexpected == 2
