"""A scripted stand-in for an OpenAI-compatible Chat Completions API (what vLLM serves), for tests that run the
real ``openai`` SDK against it, the way :mod:`tests.support.frontier.anthropic_server` does for the Messages API::

    async with ChatServer(default=ChatReply.tool({"category": "spam", ...})) as server:
        server.script(ChatReply.error(429, retry_after=2), ChatReply.tool('{"category": "sp'))  # broken JSON
        client = openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0)

The subset: ``POST /v1/chat/completions`` (non-streaming) with ``messages``, ``tools`` (functions with JSON
schema ``parameters``) and a ``tool_choice`` naming one of them; answers with one choice whose message carries
``tool_calls`` (arguments as a JSON *string*, as on the wire), text, or a ``refusal``; ``usage`` with
``prompt_tokens_details.cached_tokens``; errors with OpenAI's body and ``retry-after``; slow answers. A request
the SDK builds wrongly gets a 400, one without a bearer token a 401. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeAlias

from aiohttp import web

JSONObject: TypeAlias = dict[str, Any]
ChatResponder: TypeAlias = Callable[[JSONObject], "ChatReply | Awaitable[ChatReply]"]
COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class ChatUsage:
    prompt: int = 900
    completion: int = 50
    cached: int = 0

    def to_json(self) -> JSONObject:
        return {"prompt_tokens": self.prompt, "completion_tokens": self.completion,
                "total_tokens": self.prompt + self.completion,
                "prompt_tokens_details": {"cached_tokens": self.cached}}


@dataclass(frozen=True, slots=True)
class ChatReply:
    """One scripted answer; build it with the class methods."""

    status: int = 200
    arguments: str | None = None
    tool_name: str | None = None  # None: the function the request forced
    text: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    usage: ChatUsage = field(default_factory=ChatUsage)
    error: JSONObject | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0

    @classmethod
    def tool(cls, arguments: Mapping[str, Any] | str, *, name: str | None = None, usage: ChatUsage | None = None,
             finish_reason: str = "tool_calls", delay_s: float = 0.0) -> ChatReply:
        """A function call; a dict is sent as JSON text, a str verbatim (e.g. truncated JSON)."""
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        return cls(arguments=raw, tool_name=name, usage=usage or ChatUsage(), finish_reason=finish_reason,
                   delay_s=delay_s)

    @classmethod
    def say(cls, text: str, *, finish_reason: str = "stop") -> ChatReply:
        """Plain text, no function call."""
        return cls(text=text, finish_reason=finish_reason)

    @classmethod
    def refuse(cls, refusal: str = "I can't help with that.") -> ChatReply:
        return cls(refusal=refusal)

    @classmethod
    def fail(cls, status: int, message: str = "scripted error", *, retry_after: float | None = None,
             delay_s: float = 0.0) -> ChatReply:
        kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                429: "rate_limit_exceeded"}.get(status, "server_error")
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        return cls(status=status, error={"message": message, "type": kind, "param": None, "code": None},
                   headers=headers, delay_s=delay_s)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    headers: Mapping[str, str]
    body: JSONObject

    def message(self, role: str) -> str:
        return next((str(m.get("content")) for m in self.body.get("messages", []) if m.get("role") == role), "")


class ChatServer:
    """An aiohttp server on 127.0.0.1 (a free port); ``url`` is the SDK's ``base_url`` (ends in ``/v1``)."""

    def __init__(self, *replies: ChatReply, default: ChatReply | ChatResponder | None = None) -> None:
        self.default = default
        self.requests: list[ChatRequest] = []
        self._script = list(replies)
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._count = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def script(self, *replies: ChatReply) -> None:
        self._script.extend(replies)

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post(COMPLETIONS_PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return _error(ChatReply.fail(400, "the body is not a JSON object"))
        self.requests.append(ChatRequest(dict(request.headers), body))
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _error(ChatReply.fail(401, "missing bearer token"))
        if problem := _problem(body):
            return _error(ChatReply.fail(400, problem))
        reply = await self._next(body)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.error is not None:
            return _error(reply)
        self._count += 1
        return web.json_response(self._completion(body, reply))

    async def _next(self, body: JSONObject) -> ChatReply:
        if self._script:
            return self._script.pop(0)
        answer = self.default
        if answer is None:
            return ChatReply.fail(500, "nothing scripted for this request")
        if isinstance(answer, ChatReply):
            return answer
        result = answer(body)
        return await result if inspect.isawaitable(result) else result

    def _completion(self, body: JSONObject, reply: ChatReply) -> JSONObject:
        message: JSONObject = {"role": "assistant", "content": reply.text, "refusal": reply.refusal}
        if reply.arguments is not None:
            forced = body["tool_choice"]["function"]["name"] if isinstance(body.get("tool_choice"), dict) else None
            message["tool_calls"] = [{"id": f"call_{self._count}", "type": "function",
                                      "function": {"name": reply.tool_name or forced or "unknown",
                                                   "arguments": reply.arguments}}]
        return {"id": f"chatcmpl-{self._count}", "object": "chat.completion", "created": 1_790_000_000,
                "model": body["model"], "usage": reply.usage.to_json(),
                "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason,
                             "logprobs": None}]}


def _problem(body: JSONObject) -> str | None:
    """What a real server would reject in the requests our adjudicator sends."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) and "role" in m
                                                                  for m in messages):
        return "messages must be a non-empty list of {role, content}"
    tools = body.get("tools") or []
    names = [t.get("function", {}).get("name") for t in tools if t.get("type") == "function"]
    if any(not isinstance(t.get("function", {}).get("parameters"), dict) for t in tools):
        return "every function needs a JSON schema in parameters"
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("function", {}).get("name") not in names:
        return "tool_choice names a function that is not in tools"
    if body.get("stream"):
        return "streaming is not part of this test server"
    return None


def _error(reply: ChatReply) -> web.Response:
    return web.json_response({"error": reply.error}, status=reply.status, headers=dict(reply.headers))
