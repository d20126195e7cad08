"""The wire format of the scripted Anthropic server: replies, recorded requests, validation, usage.

Used by :class:`tests.support.frontier.anthropic_server.MessagesServer`; see that module for scripting.

What is simulated, and how:

- **Validation**, as far as the adjudicator's requests go: auth and ``anthropic-version`` headers, a JSON
  object body with ``model``, ``max_tokens``, ``messages`` (first turn from the user), an optional
  ``system`` (string or list of text blocks), ``tools`` with ``input_schema``, a ``tool_choice`` naming one
  of them, at most 4 ``cache_control`` breakpoints, no ``stream``. A bad request gets the API's 400
  ``invalid_request_error`` (401 ``authentication_error`` without credentials).
- **Usage**: about 4 characters a token. **Prompt caching** is modelled on the API's: the cacheable prefix
  runs in the order tools, system, messages up to a block marked ``cache_control``; the first request with
  a given prefix reports it as ``cache_creation_input_tokens``, later ones within the TTL (5 minutes, or 1
  hour for ``"ttl": "1h"``) as ``cache_read_input_tokens``, and ``input_tokens`` counts only what follows
  the last breakpoint. A prefix differing by one byte misses. The real API also ignores prefixes shorter
  than a model-dependent minimum (1024 to 4096 tokens); pass ``min_cacheable_tokens`` to model that
  (default 0, so short test prompts are cached).
- **Failures**: HTTP errors with the API's error body and ``request-id``, ``retry-after`` /
  ``retry-after-ms`` headers, slow answers (``delay_s``) and raw bodies (:meth:`Reply.raw`) for malformed
  responses. A delayed handler is cancelled when the client gives up, and :meth:`MessagesServer.stop` ends
  every delay, so no task outlives the server.

Every request is recorded (:attr:`MessagesServer.requests`), including the ones answered with an error.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
Responder: TypeAlias = Callable[[JSONObject], "Reply | Awaitable[Reply]"]
StopReason: TypeAlias = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "pause_turn"]
BatchOutcome: TypeAlias = Literal["expired", "canceled"]  # a request's result that carries no answer

MESSAGES_PATH = "/v1/messages"
DEFAULT_TOOL_NAME = "record_verdict"
DEFAULT_OUTPUT_TOKENS = 60
CHARS_PER_TOKEN = 4
MAX_CACHE_BREAKPOINTS = 4
CACHE_TTL_S: Mapping[str, float] = {"5m": 300.0, "1h": 3600.0}

#: HTTP status of each API error type (https://docs.claude.com/en/api/errors).
ERROR_STATUS: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one reply, as the API reports them in ``usage``."""

    input: int
    output: int = DEFAULT_OUTPUT_TOKENS
    cache_write: int = 0
    cache_read: int = 0

    def to_json(self) -> JSONObject:
        return {
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
        }


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. Build it with the class methods; the fields are the wire details.

    ``usage=None`` (the default) means *simulated* usage (see the module docstring); ``output_tokens`` then
    applies. ``tool_name=None`` answers with the tool the request forced (``tool_choice``), else its first
    tool, else :data:`DEFAULT_TOOL_NAME`. ``model=None`` echoes the request's model.
    """

    status: int = 200
    content: tuple[JSONObject, ...] = ()
    stop_reason: StopReason | None = "end_turn"
    stop_details: JSONObject | None = None
    tool_input: JSONObject | None = None  # the tool_use block's input; its block is built per request
    tool_name: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    raw_body: bytes | None = None
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    usage: Usage | None = None
    output_tokens: int = DEFAULT_OUTPUT_TOKENS
    model: str | None = None
    delay_s: float = 0.0
    batch_outcome: BatchOutcome | None = None  # answers a batch request with no result: expired or canceled

    @classmethod
    def tool(
        cls,
        tool_input: Mapping[str, Any],
        *,
        name: str | None = None,
        text: str | None = None,
        stop_reason: StopReason = "tool_use",
        usage: Usage | None = None,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        delay_s: float = 0.0,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """A ``tool_use`` answer with ``tool_input`` as its input (not checked against the schema: the
        model can send anything), after a ``text`` block when ``text`` is given."""
        return cls(
            content=() if text is None else ({"type": "text", "text": text},),
            stop_reason=stop_reason,
            tool_input=dict(tool_input),
            tool_name=name,
            usage=usage,
            output_tokens=output_tokens,
            delay_s=delay_s,
            headers=dict(headers or {}),
        )

    @classmethod
    def text(
        cls,
        text: str,
        *,
        stop_reason: StopReason = "end_turn",
        usage: Usage | None = None,
        output_tokens: int = DEFAULT_OUTPUT_TOKENS,
        delay_s: float = 0.0,
    ) -> Reply:
        """A plain text answer, no tool call (what a model does when it ignores ``tool_choice``)."""
        return cls(
            content=({"type": "text", "text": text},),
            stop_reason=stop_reason,
            usage=usage,
            output_tokens=output_tokens,
            delay_s=delay_s,
        )

    @classmethod
    def refusal(
        cls,
        text: str = "",
        *,
        category: str | None = None,
        explanation: str | None = None,
        usage: Usage | None = None,
        delay_s: float = 0.0,
    ) -> Reply:
        """``stop_reason: "refusal"``: the API's safety classifiers stopped the answer. The content is
        whatever was produced before (``text``; nothing by default) and ``stop_details`` says why."""
        return cls(
            content=({"type": "text", "text": text},) if text else (),
            stop_reason="refusal",
            stop_details={"type": "refusal", "category": category, "explanation": explanation},
            usage=usage,
            output_tokens=max(1, len(text) // CHARS_PER_TOKEN),
            delay_s=delay_s,
        )

    @classmethod
    def max_tokens(cls, text: str = "The post", *, usage: Usage | None = None) -> Reply:
        """``stop_reason: "max_tokens"``: the answer was cut off (here: a text block, no tool call)."""
        return cls(content=({"type": "text", "text": text},), stop_reason="max_tokens", usage=usage)

    @classmethod
    def content_blocks(
        cls,
        *blocks: Mapping[str, Any],
        stop_reason: StopReason | None = "end_turn",
        usage: Usage | None = None,
        delay_s: float = 0.0,
    ) -> Reply:
        """Any content, verbatim: several tool calls, an empty list, an unknown block type..."""
        return cls(content=tuple(dict(b) for b in blocks), stop_reason=stop_reason, usage=usage, delay_s=delay_s)

    @classmethod
    def error(
        cls,
        status: int,
        error_type: str | None = None,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> Reply:
        """An API error: ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``
        with HTTP ``status``. ``error_type`` defaults to the API's type for that status (``api_error`` for
        an unknown 5xx). ``retry_after`` (seconds; a float is sent as written, a string verbatim, e.g. an
        HTTP date) and ``retry_after_ms`` set the headers of those names."""
        if error_type is None:
            by_status = {s: t for t, s in ERROR_STATUS.items()}
            error_type = by_status.get(status, "api_error" if status >= 500 else "invalid_request_error")
        extra = dict(headers or {})
        if retry_after is not None:
            extra["retry-after"] = retry_after if isinstance(retry_after, str) else _number(retry_after)
        if retry_after_ms is not None:
            extra["retry-after-ms"] = _number(retry_after_ms)
        return cls(
            status=status,
            stop_reason=None,
            error_type=error_type,
            error_message=message or _default_error_message(error_type),
            headers=extra,
            delay_s=delay_s,
        )

    @classmethod
    def raw(
        cls, status: int, body: bytes | str, *, content_type: str = "application/json", delay_s: float = 0.0
    ) -> Reply:
        """Exactly this body and status (e.g. truncated JSON, an HTML error page from a proxy)."""
        data = body.encode() if isinstance(body, str) else body
        return cls(status=status, raw_body=data, content_type=content_type, stop_reason=None, delay_s=delay_s)

    @classmethod
    def expired(cls) -> Reply:
        """For a request in a Message Batch: it ends ``expired`` (not processed within the 24 hours). It cannot
        answer a plain ``POST /v1/messages``: that gets a 500 and counts as :attr:`MessagesServer.unexpected`."""
        return cls(stop_reason=None, batch_outcome="expired")

    @classmethod
    def canceled(cls) -> Reply:
        """For a request in a Message Batch: it ends ``canceled`` (as if the batch was canceled before this
        request ran), whether or not the batch was. Like :meth:`expired`, for batch requests only."""
        return cls(stop_reason=None, batch_outcome="canceled")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it. ``headers`` has lower-case names; ``body`` is the parsed JSON
    (``None`` when it was not JSON)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: JSONObject | None
    received_at: float  # time.monotonic()
    query: Mapping[str, str] = field(default_factory=dict)  # the URL's query parameters (``limit``, ``after_id``...)

    @property
    def system_text(self) -> str:
        """The system prompt's text: the string, or its text blocks joined by newlines."""
        return system_text(self.body or {})

    @property
    def user_text(self) -> str:
        """The text of the last user turn (its string, or its text blocks joined by newlines)."""
        return user_text(self.body or {})


def system_text(body: Mapping[str, Any]) -> str:
    """The system prompt of a request body as one string (for responders and assertions)."""
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system if isinstance(b, dict))
    return ""


def user_text(body: Mapping[str, Any]) -> str:
    """The text of the last user turn of a request body, e.g. for a responder that answers per post."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
            return ""
    return ""




def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _default_error_message(error_type: str) -> str:
    return {
        "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
        "overloaded_error": "Overloaded",
        "api_error": "Internal server error",
        "invalid_request_error": "Invalid request",
        "authentication_error": "invalid x-api-key",
        "not_found_error": "Not found",
    }.get(error_type, error_type)


def requested_tool(body: Mapping[str, Any]) -> str:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict) and isinstance(tools[0].get("name"), str):
        return str(tools[0]["name"])
    return DEFAULT_TOOL_NAME


def error_body(reply: Reply, request_id: str) -> JSONObject:
    """The API's error object: ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""
    return {
        "type": "error",
        "error": {"type": reply.error_type, "message": reply.error_message},
        "request_id": request_id,
    }


def errored_result(reply: Reply, request_id: str) -> JSONObject:
    return {"type": "errored", "error": error_body(reply, request_id)}


def auth_problem(headers: Mapping[str, str]) -> str | None:
    if headers.get("x-api-key") or headers.get("authorization"):
        return None
    return "x-api-key header is required"


def version_problem(headers: Mapping[str, str]) -> str | None:
    if not headers.get("anthropic-version"):
        return "anthropic-version: header is required"
    return None


def request_problem(headers: Mapping[str, str], body: JSONObject | None) -> str | None:
    """What the API would reject in this request, within the subset we model; None when it is fine."""
    return version_problem(headers) or params_problem(body)


def params_problem(body: JSONObject | None) -> str | None:
    """What the API would reject in a Messages request body, within the subset we model; None when fine."""
    if body is None:
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: must be a positive integer"
    if body.get("stream"):
        return "stream: the test server does not stream"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be 'user' or 'assistant'"
        content = message.get("content")
        if isinstance(content, str):
            if not content:
                return f"messages.{i}: content must be non-empty"
        elif not isinstance(content, list) or not content or not all(isinstance(b, dict) for b in content):
            return f"messages.{i}.content: must be a string or a non-empty list of content blocks"
    if messages[0].get("role") != "user":
        return "messages: first message must use the 'user' role"
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list):
            return "system: must be a string or a list of text blocks"
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
                return f"system.{i}: must be a text block"
            if not block["text"]:
                return f"system.{i}: text content blocks must be non-empty"
    tools = body.get("tools")
    names: list[str] = []
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: must be a list"
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                return f"tools.{i}.name: Field required"
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                return f"tools.{i}.input_schema: must be a JSON schema with type 'object'"
            names.append(tool["name"])
        if len(set(names)) != len(names):
            return "tools: tool names must be unique"
    choice = body.get("tool_choice")
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            return "tool_choice: must be an object with type auto, any, tool or none"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice: tool {choice.get('name')!r} not found in tools"
        if choice["type"] in ("any", "tool") and not names:
            return "tool_choice: requires tools"
    breakpoints = sum(1 for _segment, ttl in prompt_segments(body) if ttl is not None)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        return f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}."
    return None


def prompt_segments(body: Mapping[str, Any]) -> list[tuple[Any, str | None]]:
    """The prompt in cache order (tools, system, message blocks), each with the TTL of its ``cache_control``
    breakpoint (None when it has none)."""
    segments: list[tuple[Any, str | None]] = []

    def add(block: Any) -> None:
        ttl: str | None = None
        if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
            ttl = str(block["cache_control"].get("ttl", "5m"))
            block = {k: v for k, v in block.items() if k != "cache_control"}
        segments.append((block, ttl))

    for tool in body.get("tools") or []:
        add(tool)
    system = body.get("system")
    if isinstance(system, str):
        add(system)
    elif isinstance(system, list):
        for block in system:
            add(block)
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        role = message.get("role")
        if isinstance(content, list):
            for block in content:
                add(block)
                segments[-1] = ({"role": role, "block": segments[-1][0]}, segments[-1][1])
        else:
            add({"role": role, "content": content})
    return segments


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def tokens(segment: Any) -> int:
    """About 4 characters a token: of the text for a text block or string, of the JSON otherwise."""
    if isinstance(segment, str):
        text = segment
    elif isinstance(segment, dict) and isinstance(segment.get("text"), str):
        text = segment["text"]
    elif isinstance(segment, dict) and isinstance(segment.get("block"), dict) and "text" in segment["block"]:
        text = str(segment["block"]["text"])
    elif isinstance(segment, dict) and isinstance(segment.get("content"), str):
        text = segment["content"]
    else:
        text = canonical(segment).decode()
    return max(1, -(-len(text) // CHARS_PER_TOKEN))
