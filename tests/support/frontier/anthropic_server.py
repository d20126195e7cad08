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

See :mod:`tests.support.frontier.anthropic_wire` for what is simulated of ``/v1/messages`` (validation,
usage and prompt caching, failures) and :mod:`tests.support.frontier.anthropic_batches` for the
Message Batches API.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from aiohttp import web

from tests.support.frontier.anthropic_batches import (
    BATCHES_PATH,
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    BatchRecord,
    batch_problem,
)
from tests.support.frontier.anthropic_wire import (
    CACHE_TTL_S,
    MESSAGES_PATH,
    BatchOutcome,
    JSONObject,
    RecordedRequest,
    Reply,
    Responder,
    Usage,
    auth_problem,
    canonical,
    error_body,
    errored_result,
    params_problem,
    prompt_segments,
    request_problem,
    requested_tool,
    tokens,
    version_problem,
)


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
        problem = auth_problem(request.headers)
        if problem is not None:
            return self._error_response(Reply.error(401, "authentication_error", problem))
        problem = request_problem(request.headers, body)
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
        problem = batch_problem(body)
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
        problem = auth_problem(request.headers)
        if problem is not None:
            return body, self._error_response(Reply.error(401, "authentication_error", problem))
        problem = version_problem(request.headers)
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
        problem = params_problem(params)  # the API validates each request's params while processing
        if problem is not None:
            return errored_result(Reply.error(400, "invalid_request_error", problem), request_id)
        default = self.batch_default if self.batch_default is not None else self.default
        reply = await self._answer(params, self._batch_script, default)
        if reply.batch_outcome is not None:
            return {"type": reply.batch_outcome}
        if reply.raw_body is not None:
            self.unexpected += 1
            message = "MessagesServer: Reply.raw(...) cannot answer a batch request"
            return errored_result(Reply.error(500, "api_error", message), request_id)
        if reply.error_type is not None:
            return errored_result(reply, request_id)
        usage = self._simulate_usage(params, reply.output_tokens)
        return {"type": "succeeded", "message": self._message_payload(params, reply, reply.usage or usage)}

    # -- responses ---------------------------------------------------------------------------------------

    def _request_id_header(self) -> dict[str, str]:
        return {"request-id": f"req_test_{len(self.requests)}"}

    def _error_response(self, reply: Reply) -> web.Response:
        request_id = self._request_id_header()
        payload = error_body(reply, request_id["request-id"])
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
                    "name": reply.tool_name or requested_tool(body),
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
        segments = prompt_segments(body)
        now = self._clock()
        total = 0
        read = 0  # tokens of the longest cached prefix ending at a breakpoint
        last_breakpoint = 0  # tokens up to and including the last breakpoint
        digest = hashlib.sha256()
        for segment, ttl in segments:
            digest.update(canonical(segment))
            total += tokens(segment)
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
