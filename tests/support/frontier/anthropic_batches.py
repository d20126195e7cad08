"""Message Batches of the scripted Anthropic server: the batch records and what a create request must hold.

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

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias

from tests.support.frontier.anthropic_wire import JSONObject

BatchStatus: TypeAlias = Literal["in_progress", "canceling", "ended"]

BATCHES_PATH = "/v1/messages/batches"
BATCH_TTL = timedelta(hours=24)  # a batch expires (ends, its unprocessed requests ``expired``) 24 h after creation
MAX_BATCH_REQUESTS = 100_000
CUSTOM_ID_PATTERN = re.compile(r"[a-zA-Z0-9_-]{1,64}")
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 1000


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
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "ended_at": None if self.ended_at is None else rfc3339(self.ended_at),
            "cancel_initiated_at": None if self.cancel_initiated_at is None else rfc3339(self.cancel_initiated_at),
            "archived_at": None,
            "results_url": results_url if self.ended else None,
        }


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def batch_problem(body: JSONObject | None) -> str | None:
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
