"""A scripted stand-in for the Anthropic Messages API, for tests that run the real ``anthropic`` SDK.

The API cannot be reached from the tests, and patching the client would test our patch rather than the SDK.
So the tests point a real ``anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)``
at this server, which speaks the subset of the wire format the adjudicator uses (non-streaming
``POST /v1/messages``, and the Message Batches API below) and answers what the test scripted::

    async with MessagesServer() as server:
        server.script(
            Reply.tool({"category": "spam", "decision": "block", "rationale": "..."}),
            Reply.error(429, "rate_limit_error", retry_after=1.5),
            Reply.error(529, "overloaded_error"),
            Reply.refusal(),
            Reply.text("I think it's spam"),            # no tool_use block
            Reply.tool({...}, delay_s=5.0),             # slow: for client timeouts
        )
        server.default = lambda body: Reply.tool(...)   # after the script: a Reply or a responder
        ...
        server.requests[0].body["system"]              # what the SDK sent, in order

Scripted replies are consumed one per request, in order, when the request arrives; once the script is
empty, :attr:`MessagesServer.default` answers (a :class:`Reply`, or a *responder*: a function of the request
body returning a Reply, possibly async). With no default, the server answers 500 ``api_error`` and counts
the request in :attr:`MessagesServer.unexpected`, so a test that sends more than it scripted notices.

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

**Message Batches** (``/v1/messages/batches``), shaped as the SDK's ``MessageBatch``,
``MessageBatchIndividualResponse`` and ``AsyncPage`` parse them (strict validation passes)::

    server.script_batch(Reply.tool({...}), Reply.error(529), Reply.expired(), Reply.canceled())
    server.batch_default = lambda params: Reply.tool(...)   # then server.default
    server.script_batch_api(Reply.error(529, retry_after=2))  # the next batch *endpoint* call fails
    server.hold_batches = True; ...; await server.end_batches()    # or: await server.expire_batches()
    server.batches["msgbatch_test_1"].outcomes                      # {"post-1": "succeeded", ...}

- **Endpoints**, each with the auth and ``anthropic-version`` checks of ``/v1/messages``:
  ``POST /v1/messages/batches`` creates a batch (``msgbatch_test_<n>``, ``in_progress``, every request counted
  ``processing``, ``expires_at`` 24 h after ``created_at``); the body must hold ``requests``, each with a
  ``custom_id`` matching ``^[a-zA-Z0-9_-]{1,64}$``, unique in the batch, and a ``params`` object, else 400
  ``invalid_request_error``. ``GET .../{id}`` retrieves one (404 ``not_found_error`` for an unknown id).
  ``GET /v1/messages/batches`` lists them newest first: ``limit`` (default 20, 1 to 1000), ``after_id`` (the
  older ones after that batch) or ``before_id`` (the newer ones before it); the page carries ``data``,
  ``has_more``, ``first_id`` and ``last_id``. ``POST .../{id}/cancel`` moves an ``in_progress`` batch to
  ``canceling`` (with ``cancel_initiated_at``); canceling an ended batch is a 400. ``GET .../{id}/results`` is
  the JSONL results file, one line per request in *reverse* submission order (clients must match on
  ``custom_id``), served as ``application/binary`` when the ``Accept`` header asks for it (the SDK does), else
  ``application/x-jsonl``; before the batch has ended it is a 400 ``invalid_request_error`` (the API does not
  document that status; the SDK itself refuses earlier, as the batch has no ``results_url`` yet). An ended
  batch has ``ended_at``, final ``request_counts`` and an *absolute* ``results_url`` on this server, which
  ``client.messages.batches.results(id)`` GETs after retrieving the batch. ``archived_at`` is always null.
  Deleting a batch is not simulated (404, as any other path).
- **Progress** is deterministic and driven by the client's polls: each retrieve of an ``in_progress`` batch is
  a progress step. The first :attr:`MessagesServer.batch_polls_to_end` (default 1) retrieves still report it
  ``in_progress``; the next one ends it (0: the first retrieve already sees it ended). A ``canceling`` batch
  ends on its next retrieve with every request ``canceled`` (nothing runs before the end here, so none is
  left to finish). Creating, listing and canceling do not move a batch on; mind that
  ``client.messages.batches.results(id)`` retrieves the batch first, a poll like any other. With
  :attr:`MessagesServer.hold_batches` true, retrieves never end a batch; :meth:`MessagesServer.end_batches`
  ends open batches now (all, or those named), and :meth:`MessagesServer.expire_batches` ends them with every
  request ``expired``, as when 24 h pass.
- **Answers**: when a batch ends, its requests are answered in submission order as ``/v1/messages`` would
  answer their ``params``: first from the batch script (:meth:`MessagesServer.script_batch`), then
  :attr:`MessagesServer.batch_default`, then :attr:`MessagesServer.default` (nothing: an ``errored``
  ``api_error`` result, counted in ``unexpected``). A normal reply is a ``succeeded`` result whose ``message``
  is built as ``/v1/messages`` builds it (simulated usage against the same prompt cache, ``tool_use`` block);
  an error reply (:meth:`Reply.error`) is an ``errored`` result with its error type and message (its status,
  headers and delay do not apply); :meth:`Reply.expired` and :meth:`Reply.canceled` give those results (and,
  answering a plain ``/v1/messages`` request, a 500 counted in ``unexpected``). ``delay_s`` is ignored and a
  raw reply is an ``errored`` ``api_error`` counted in ``unexpected``. Each request's ``params`` are validated
  as ``/v1/messages`` bodies are, but only while processing, as the API does: an invalid one is an ``errored``
  ``invalid_request_error`` result and consumes no scripted reply.
- **Failures of the endpoints themselves**: :meth:`MessagesServer.script_batch_api` queues error (or raw)
  replies that answer the next batch-endpoint calls (any of the five) before their normal handling, with
  their status, ``retry-after`` headers and delay; such a failed call does not count as a poll.
- **Records**: :attr:`MessagesServer.batches` maps each id to its :class:`BatchRecord` (the submitted
  requests, status, results by ``custom_id``, timestamps); every HTTP call is in ``requests`` as well, with
  its query parameters. Timestamps come from ``wall_clock`` (UTC now by default).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

from aiohttp import web

JSONObject: TypeAlias = dict[str, Any]
Responder: TypeAlias = Callable[[JSONObject], "Reply | Awaitable[Reply]"]
StopReason: TypeAlias = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "pause_turn"]
BatchStatus: TypeAlias = Literal["in_progress", "canceling", "ended"]
BatchOutcome: TypeAlias = Literal["expired", "canceled"]  # a request's result that carries no answer

MESSAGES_PATH = "/v1/messages"
BATCHES_PATH = "/v1/messages/batches"
BATCH_TTL = timedelta(hours=24)  # a batch expires (ends, its unprocessed requests ``expired``) 24 h after creation
MAX_BATCH_REQUESTS = 100_000
CUSTOM_ID_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 1000
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


@dataclass(slots=True)
class BatchRecord:
    """One Message Batch as the server holds it (:attr:`MessagesServer.batches`).

    ``requests`` are the submitted ``{"custom_id": ..., "params": {...}}`` objects, in submission order.
    ``results`` maps each ``custom_id`` to its result object (``{"type": "succeeded", "message": {...}}``,
    ``{"type": "errored", "error": {...}}``, ``{"type": "canceled"}`` or ``{"type": "expired"}``), in submission
    order, once the batch has ended; it is empty before. ``polls`` counts the retrieves answered ``in_progress``.
    """

    id: str
    requests: tuple[JSONObject, ...]
    created_at: datetime
    processing_status: BatchStatus = "in_progress"
    results: dict[str, JSONObject] = field(default_factory=dict)
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    polls: int = 0

    @property
    def expires_at(self) -> datetime:
        return self.created_at + BATCH_TTL

    @property
    def ended(self) -> bool:
        return self.processing_status == "ended"

    @property
    def custom_ids(self) -> list[str]:
        return [str(request["custom_id"]) for request in self.requests]

    @property
    def outcomes(self) -> dict[str, str]:
        """``custom_id`` -> result type (``succeeded``, ``errored``, ``canceled``, ``expired``), once ended."""
        return {custom_id: str(result["type"]) for custom_id, result in self.results.items()}

    @property
    def request_counts(self) -> dict[str, int]:
        """The API's tallies: every request counts as ``processing`` until the whole batch ends."""
        counts = dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0)
        if not self.ended:
            counts["processing"] = len(self.requests)
        for outcome in self.outcomes.values():
            counts[outcome] += 1
        return counts

    def to_json(self, results_url: str | None) -> JSONObject:
        """The ``MessageBatch`` object; ``results_url`` is reported only once the batch has ended."""
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.processing_status,
            "request_counts": self.request_counts,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.expires_at),
            "ended_at": None if self.ended_at is None else _rfc3339(self.ended_at),
            "cancel_initiated_at": None if self.cancel_initiated_at is None else _rfc3339(self.cancel_initiated_at),
            "archived_at": None,
            "results_url": results_url if self.ended else None,
        }


class MessagesServer:
    """An aiohttp server on ``127.0.0.1`` (a free port) in the running event loop; see the module docstring.

    Use ``async with MessagesServer() as server`` or ``await server.start()`` / ``await server.stop()``.
    """

    def __init__(
        self,
        *replies: Reply,
        default: Reply | Responder | None = None,
        batch_default: Reply | Responder | None = None,
        min_cacheable_tokens: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.default: Reply | Responder | None = default
        self.batch_default: Reply | Responder | None = batch_default  # before `default`, for batch requests
        self.batch_polls_to_end = 1  # retrieves that still report a batch in_progress before it ends
        self.hold_batches = False  # True: batches end only through end_batches() / expire_batches()
        self.batches: dict[str, BatchRecord] = {}  # by id, in creation order
        self.requests: list[RecordedRequest] = []
        self.unexpected = 0  # requests that found neither a scripted reply nor a default
        self.in_flight = 0
        self.peak_in_flight = 0
        self.min_cacheable_tokens = min_cacheable_tokens
        self._clock = clock
        self._script: list[Reply] = list(replies)
        self._batch_script: list[Reply] = []
        self._batch_api_script: list[Reply] = []
        self._wall_clock = wall_clock
        self._ending = asyncio.Lock()  # one batch ends at a time: an async responder may interleave retrieves
        self._cache: dict[str, float] = {}  # prefix digest -> expiry on self._clock
        self._messages = 0
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = asyncio.Event()
        self._arrived = asyncio.Condition()

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give the SDK (``base_url=server.url``)."""
        if self._port is None:
            raise RuntimeError("MessagesServer is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("MessagesServer is already started")
        app = web.Application()
        app.router.add_post(MESSAGES_PATH, self._handle_messages)
        app.router.add_post(BATCHES_PATH, self._handle_batch_create)
        # No HEAD: it would poll (and so move on) a batch. HEAD, DELETE... fall through to the 404 below.
        app.router.add_get(BATCHES_PATH, self._handle_batch_list, allow_head=False)
        app.router.add_get(BATCHES_PATH + "/{batch_id}", self._handle_batch_retrieve, allow_head=False)
        app.router.add_post(BATCHES_PATH + "/{batch_id}/cancel", self._handle_batch_cancel)
        app.router.add_get(BATCHES_PATH + "/{batch_id}/results", self._handle_batch_results, allow_head=False)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)
        # handler_cancellation: a handler still sleeping when the client gives up is cancelled, not leaked.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._closing.clear()
        self._runner = runner

    async def stop(self) -> None:
        """End pending delays, close connections and free the port. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- scripting ---------------------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Append replies to the script: each answers one request, in order, before :attr:`default` does."""
        self._script.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        return len(self._script)

    def script_batch(self, *replies: Reply) -> None:
        """Append replies to the batch script: each answers one batch request, in submission order, when its
        batch ends, before :attr:`batch_default` (then :attr:`default`) does."""
        self._batch_script.extend(replies)

    @property
    def batch_pending(self) -> int:
        """Scripted batch replies (:meth:`script_batch`) not consumed yet."""
        return len(self._batch_script)

    def script_batch_api(self, *replies: Reply) -> None:
        """Append failures of the batch endpoints themselves: each answers the next call to any of them
        (create, retrieve, list, cancel, results) instead of its normal handling. Errors and raw bodies only."""
        for reply in replies:
            if reply.error_type is None and reply.raw_body is None:
                raise ValueError(f"script_batch_api takes Reply.error(...) or Reply.raw(...), not {reply!r}")
        self._batch_api_script.extend(replies)

    @property
    def batch_api_pending(self) -> int:
        """Scripted batch-endpoint failures (:meth:`script_batch_api`) not consumed yet."""
        return len(self._batch_api_script)

    async def end_batches(self, *batch_ids: str) -> list[BatchRecord]:
        """End these open batches (all open ones when none is named) now, whatever :attr:`hold_batches` and
        :attr:`batch_polls_to_end` say: their requests are answered (a canceling batch's are ``canceled``).
        Returns the batches this call ended."""
        return [record for record in self._open_batches(batch_ids) if await self._end_batch(record)]

    async def expire_batches(self, *batch_ids: str) -> list[BatchRecord]:
        """End these open batches (all open ones when none is named) with every request ``expired``, as when
        24 hours pass. Returns the batches this call ended."""
        return [record for record in self._open_batches(batch_ids) if await self._end_batch(record, "expired")]

    def _open_batches(self, batch_ids: Sequence[str]) -> list[BatchRecord]:
        records = [self.batches[batch_id] for batch_id in batch_ids] if batch_ids else list(self.batches.values())
        return [record for record in records if not record.ended]

    def clear_cache(self) -> None:
        """Forget every cached prompt prefix (as if the TTL had passed)."""
        self._cache.clear()

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests have arrived; returns :attr:`requests`."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests

    # -- handlers ----------------------------------------------------------------------------------------

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        await self._record(request, None)
        return self._error_response(Reply.error(404, "not_found_error", f"Not found: {request.method} {request.path}"))

    async def _handle_messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_and_record(request)
        problem = _auth_problem(request.headers)
        if problem is not None:
            return self._error_response(Reply.error(401, "authentication_error", problem))
        problem = _request_problem(request.headers, body)
        if problem is not None or body is None:
            return self._error_response(Reply.error(400, "invalid_request_error", problem or "invalid JSON body"))

        reply = await self._next_reply(body)
        if reply.batch_outcome is not None:
            self.unexpected += 1
            message = f"MessagesServer: Reply.{reply.batch_outcome}() answers batch requests only"
            reply = Reply.error(500, "api_error", message)
        answered = reply.error_type is None and reply.raw_body is None
        # Only a request the model runs on reads or writes the prompt cache (not one refused with a 429).
        # A scripted usage is reported as is, but the simulated cache still sees the request.
        usage = self._simulate_usage(body, reply.output_tokens) if answered else None
        if usage is not None and reply.usage is not None:
            usage = reply.usage

        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if reply.delay_s > 0 and not await self._sleep(reply.delay_s):
                return self._error_response(Reply.error(529, "overloaded_error", "test server shutting down"))
        finally:
            self.in_flight -= 1

        if reply.raw_body is not None:
            return self._raw_response(reply)
        if usage is None:
            return self._error_response(reply)
        return self._message_response(body, reply, usage)

    async def _next_reply(self, body: JSONObject) -> Reply:
        return await self._answer(body, self._script, self.default)

    async def _answer(self, body: JSONObject, script: list[Reply], default: Reply | Responder | None) -> Reply:
        """The next reply of ``script``, else ``default``'s (a 500 counted as unexpected when there is none)."""
        if script:
            return script.pop(0)
        if isinstance(default, Reply):
            return default
        if default is None:
            self.unexpected += 1
            return Reply.error(500, "api_error", "MessagesServer: no scripted reply left and no default")
        result = default(body)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Reply):
            raise TypeError(f"responder returned {result!r}, not a Reply")
        return result

    async def _read_and_record(self, request: web.Request) -> JSONObject | None:
        """Record the request; returns its body when that is a JSON object."""
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        await self._record(request, body)
        return body

    async def _record(self, request: web.Request, body: JSONObject | None) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        query = {name: value for name, value in request.query.items()}
        recorded = RecordedRequest(request.method, request.path, headers, body, time.monotonic(), query)
        async with self._arrived:
            self.requests.append(recorded)
            self._arrived.notify_all()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, unless the server stops first. True when the full delay passed."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return True
        return False

    # -- batch handlers ----------------------------------------------------------------------------------

    async def _handle_batch_create(self, request: web.Request) -> web.StreamResponse:
        body, failure = await self._open_batch_call(request)
        if failure is not None:
            return failure
        problem = _batch_problem(body)
        if problem is not None or body is None:
            return self._error_response(Reply.error(400, "invalid_request_error", problem or "invalid JSON body"))
        record = BatchRecord(
            id=f"msgbatch_test_{len(self.batches) + 1}",
            requests=tuple(dict(item) for item in body["requests"]),
            created_at=self._wall_clock(),
        )
        self.batches[record.id] = record
        return self._batch_response(record)

    async def _handle_batch_retrieve(self, request: web.Request) -> web.StreamResponse:
        _body, failure = await self._open_batch_call(request)
        if failure is not None:
            return failure
        record = self.batches.get(request.match_info["batch_id"])
        if record is None:
            return self._batch_not_found(request.match_info["batch_id"])
        if not record.ended and not self.hold_batches:
            # A progress step: a canceling batch ends now, an in_progress one after batch_polls_to_end polls.
            if record.processing_status == "canceling" or record.polls >= self.batch_polls_to_end:
                await self._end_batch(record)
            else:
                record.polls += 1
        return self._batch_response(record)

    async def _handle_batch_list(self, request: web.Request) -> web.StreamResponse:
        _body, failure = await self._open_batch_call(request)
        if failure is not None:
            return failure
        query = request.query
        try:
            limit = int(query.get("limit", DEFAULT_LIST_LIMIT))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST_LIMIT:
            return self._error_response(
                Reply.error(400, "invalid_request_error", f"limit: must be an integer from 1 to {MAX_LIST_LIMIT}")
            )
        before_id, after_id = query.get("before_id") or None, query.get("after_id") or None
        if before_id is not None and after_id is not None:
            return self._error_response(
                Reply.error(400, "invalid_request_error", "before_id and after_id cannot be used together")
            )
        for cursor in (before_id, after_id):
            if cursor is not None and cursor not in self.batches:
                return self._error_response(Reply.error(400, "invalid_request_error", f"Invalid cursor: {cursor}"))
        newest_first = list(reversed(self.batches.values()))
        ids = [record.id for record in newest_first]
        if before_id is not None:  # the `limit` batches just newer than before_id
            end = ids.index(before_id)
            start = max(0, end - limit)
            page, has_more = newest_first[start:end], start > 0
        else:  # the `limit` batches just older than after_id, or the newest ones
            start = 0 if after_id is None else ids.index(after_id) + 1
            page, has_more = newest_first[start : start + limit], start + limit < len(newest_first)
        payload = {
            "data": [record.to_json(self._results_url(record)) for record in page],
            "has_more": has_more,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        }
        return web.json_response(payload, headers=self._request_id_header())

    async def _handle_batch_cancel(self, request: web.Request) -> web.StreamResponse:
        _body, failure = await self._open_batch_call(request)
        if failure is not None:
            return failure
        record = self.batches.get(request.match_info["batch_id"])
        if record is None:
            return self._batch_not_found(request.match_info["batch_id"])
        if record.ended:
            message = f"Batch {record.id} has already ended and can no longer be canceled"
            return self._error_response(Reply.error(400, "invalid_request_error", message))
        if record.processing_status == "in_progress":
            record.processing_status = "canceling"
            record.cancel_initiated_at = self._wall_clock()
        return self._batch_response(record)

    async def _handle_batch_results(self, request: web.Request) -> web.StreamResponse:
        _body, failure = await self._open_batch_call(request)
        if failure is not None:
            return failure
        record = self.batches.get(request.match_info["batch_id"])
        if record is None:
            return self._batch_not_found(request.match_info["batch_id"])
        if not record.ended:
            message = (
                f"Batch {record.id} has not finished processing (processing_status: {record.processing_status}); "
                "its results are available once it has ended"
            )
            return self._error_response(Reply.error(400, "invalid_request_error", message))
        # Not in submission order, as the API warns: clients must match results on custom_id.
        lines = [
            json.dumps({"custom_id": custom_id, "result": result}) + "\n"
            for custom_id, result in reversed(record.results.items())
        ]
        accept = request.headers.get("accept", "")
        content_type = "application/binary" if "application/binary" in accept else "application/x-jsonl"
        return web.Response(
            body="".join(lines).encode(),
            content_type=None,
            headers={"content-type": content_type, **self._request_id_header()},
        )

    async def _open_batch_call(self, request: web.Request) -> tuple[JSONObject | None, web.StreamResponse | None]:
        """Record a batch-endpoint call and run what precedes its handling: the auth and version checks, then a
        scripted failure (:meth:`script_batch_api`). Returns the JSON body, and the response to give instead of
        the normal one, if any."""
        body = await self._read_and_record(request)
        problem = _auth_problem(request.headers)
        if problem is not None:
            return body, self._error_response(Reply.error(401, "authentication_error", problem))
        problem = _version_problem(request.headers)
        if problem is not None:
            return body, self._error_response(Reply.error(400, "invalid_request_error", problem))
        if not self._batch_api_script:
            return body, None
        reply = self._batch_api_script.pop(0)
        if reply.delay_s > 0 and not await self._sleep(reply.delay_s):
            return body, self._error_response(Reply.error(529, "overloaded_error", "test server shutting down"))
        return body, self._raw_response(reply) if reply.raw_body is not None else self._error_response(reply)

    async def _end_batch(self, record: BatchRecord, outcome: BatchOutcome | None = None) -> bool:
        """End ``record``: every request gets ``outcome`` when given (``canceled`` when the batch is canceling),
        else its answer. False when it had ended already."""
        async with self._ending:
            if record.ended:
                return False
            if outcome is None and record.processing_status == "canceling":
                outcome = "canceled"
            results: dict[str, JSONObject] = {}
            for index, item in enumerate(record.requests):
                result = {"type": outcome} if outcome is not None else None
                results[str(item["custom_id"])] = result or await self._batch_result(record, index, item["params"])
            record.results = results
            record.processing_status = "ended"
            record.ended_at = self._wall_clock()
            return True

    async def _batch_result(self, record: BatchRecord, index: int, params: JSONObject) -> JSONObject:
        """The result of one batch request, answered as ``POST /v1/messages`` would answer ``params``."""
        request_id = f"req_test_{record.id}_{index + 1}"
        problem = _params_problem(params)  # the API validates each request's params while processing
        if problem is not None:
            return _errored_result(Reply.error(400, "invalid_request_error", problem), request_id)
        default = self.batch_default if self.batch_default is not None else self.default
        reply = await self._answer(params, self._batch_script, default)
        if reply.batch_outcome is not None:
            return {"type": reply.batch_outcome}
        if reply.raw_body is not None:
            self.unexpected += 1
            message = "MessagesServer: Reply.raw(...) cannot answer a batch request"
            return _errored_result(Reply.error(500, "api_error", message), request_id)
        if reply.error_type is not None:
            return _errored_result(reply, request_id)
        usage = self._simulate_usage(params, reply.output_tokens)
        return {"type": "succeeded", "message": self._message_payload(params, reply, reply.usage or usage)}

    # -- responses ---------------------------------------------------------------------------------------

    def _request_id_header(self) -> dict[str, str]:
        return {"request-id": f"req_test_{len(self.requests)}"}

    def _error_response(self, reply: Reply) -> web.Response:
        request_id = self._request_id_header()
        payload = _error_body(reply, request_id["request-id"])
        return web.json_response(payload, status=reply.status, headers={**reply.headers, **request_id})

    def _raw_response(self, reply: Reply) -> web.Response:
        return web.Response(
            status=reply.status,
            body=reply.raw_body,
            content_type=None,
            headers={"content-type": reply.content_type, **reply.headers, **self._request_id_header()},
        )

    def _message_response(self, body: JSONObject, reply: Reply, usage: Usage) -> web.Response:
        payload = self._message_payload(body, reply, usage)
        return web.json_response(payload, status=reply.status, headers={**reply.headers, **self._request_id_header()})

    def _message_payload(self, body: JSONObject, reply: Reply, usage: Usage) -> JSONObject:
        """The ``Message`` object answering ``body`` (of ``POST /v1/messages``, or a batch request's params)."""
        self._messages += 1
        content = [dict(block) for block in reply.content]
        if reply.tool_input is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_test_{self._messages}",
                    "name": reply.tool_name or _requested_tool(body),
                    "input": reply.tool_input,
                }
            )
        payload: JSONObject = {
            "id": f"msg_test_{self._messages}",
            "type": "message",
            "role": "assistant",
            "model": reply.model or body.get("model"),
            "content": content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": usage.to_json(),
        }
        if reply.stop_details is not None:
            payload["stop_details"] = reply.stop_details
        return payload

    def _results_url(self, record: BatchRecord) -> str:
        """Absolute, as the API's: the SDK GETs it as given."""
        return f"{self.url}{BATCHES_PATH}/{record.id}/results"

    def _batch_response(self, record: BatchRecord) -> web.Response:
        return web.json_response(record.to_json(self._results_url(record)), headers=self._request_id_header())

    def _batch_not_found(self, batch_id: str) -> web.Response:
        return self._error_response(Reply.error(404, "not_found_error", f"Message batch {batch_id!r} not found"))

    # -- prompt caching ----------------------------------------------------------------------------------

    def _simulate_usage(self, body: JSONObject, output_tokens: int) -> Usage:
        """Usage of ``body`` against the simulated prompt cache, which it updates (see the module docstring)."""
        segments = _prompt_segments(body)
        now = self._clock()
        total = 0
        read = 0  # tokens of the longest cached prefix ending at a breakpoint
        last_breakpoint = 0  # tokens up to and including the last breakpoint
        digest = hashlib.sha256()
        for segment, ttl in segments:
            digest.update(_canonical(segment))
            total += _tokens(segment)
            if ttl is None or total < self.min_cacheable_tokens:
                continue
            key = digest.copy().hexdigest()
            expiry = self._cache.get(key)
            if expiry is not None and expiry > now:
                read = total
            self._cache[key] = max(expiry or 0.0, now + CACHE_TTL_S.get(ttl, CACHE_TTL_S["5m"]))
            last_breakpoint = total
        return Usage(
            input=max(1, total - last_breakpoint),
            output=output_tokens,
            cache_write=last_breakpoint - read,
            cache_read=read,
        )


# -- helpers ---------------------------------------------------------------------------------------------


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


def _requested_tool(body: Mapping[str, Any]) -> str:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[0], dict) and isinstance(tools[0].get("name"), str):
        return str(tools[0]["name"])
    return DEFAULT_TOOL_NAME


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error_body(reply: Reply, request_id: str) -> JSONObject:
    """The API's error object: ``{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}``."""
    return {
        "type": "error",
        "error": {"type": reply.error_type, "message": reply.error_message},
        "request_id": request_id,
    }


def _errored_result(reply: Reply, request_id: str) -> JSONObject:
    return {"type": "errored", "error": _error_body(reply, request_id)}


def _auth_problem(headers: Mapping[str, str]) -> str | None:
    if headers.get("x-api-key") or headers.get("authorization"):
        return None
    return "x-api-key header is required"


def _version_problem(headers: Mapping[str, str]) -> str | None:
    if not headers.get("anthropic-version"):
        return "anthropic-version: header is required"
    return None


def _request_problem(headers: Mapping[str, str], body: JSONObject | None) -> str | None:
    """What the API would reject in this request, within the subset we model; None when it is fine."""
    return _version_problem(headers) or _params_problem(body)


def _batch_problem(body: JSONObject | None) -> str | None:
    """What the API would reject, at once, in a batch creation body (each request's ``params`` are checked
    later, as the batch is processed)."""
    if body is None:
        return "request body must be a JSON object"
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return "requests: at least one request is required"
    if len(requests) > MAX_BATCH_REQUESTS:
        return f"requests: a batch holds at most {MAX_BATCH_REQUESTS} requests"
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            return f"requests.{i}: must be an object with custom_id and params"
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str):
            return f"requests.{i}.custom_id: Field required"
        if not CUSTOM_ID_PATTERN.fullmatch(custom_id):
            return f"requests.{i}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if custom_id in seen:
            return f"requests.{i}.custom_id: {custom_id!r} is not unique; each custom_id in a batch must be unique"
        seen.add(custom_id)
        if not isinstance(item.get("params"), dict):
            return f"requests.{i}.params: Field required"
    return None


def _params_problem(body: JSONObject | None) -> str | None:
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
    breakpoints = sum(1 for _segment, ttl in _prompt_segments(body) if ttl is not None)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        return f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}."
    return None


def _prompt_segments(body: Mapping[str, Any]) -> list[tuple[Any, str | None]]:
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


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _tokens(segment: Any) -> int:
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
        text = _canonical(segment).decode()
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


__all__: Sequence[str] = (
    "BATCH_TTL",
    "ERROR_STATUS",
    "BatchOutcome",
    "BatchRecord",
    "BatchStatus",
    "MessagesServer",
    "RecordedRequest",
    "Reply",
    "Responder",
    "Usage",
    "system_text",
    "user_text",
)
