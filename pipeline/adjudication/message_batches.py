"""Anthropic's Message Batches API through the official SDK: many adjudications in one asynchronous job at half
the price, for escalations that can wait (the policy's ``deferrable`` tier).

    submit(items)        one batch of (custom_id, FrontierRequest); the params are exactly a direct call's
    state(batch_id)      in_progress / canceling / ended, with the request counts
    results(batch_id)    once ended: one BatchItem per request (any order; match on custom_id)
    created_since(t)     batches created at or after t: lets a run that crashed between creating a batch and
                         recording its id find it again instead of paying for it twice

A batch ends within 24 hours; requests it could not run by then end ``expired``. Each request ends on its
own: ``succeeded`` (a Message), ``errored`` (an API error object), ``canceled`` or ``expired``, so one batch
can partly fail. What to do with each outcome is the caller's policy (see :mod:`pipeline.batch.deferred`).

HTTP failures of the batch endpoints themselves are translated like a direct call's
(:func:`pipeline.adjudication.backends.sdk_errors`); the SDK retries nothing (``max_retries=0``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import anthropic
from anthropic.types.messages import MessageBatch
from anthropic.types.messages.batch_create_params import Request

from pipeline.adjudication.anthropic_api import KEY_HINT, message_params, reply_of
from pipeline.adjudication.backends import FrontierReply, sdk_errors
from pipeline.adjudication.prompt import FrontierRequest

ItemOutcome = Literal["succeeded", "errored", "canceled", "expired"]

TRANSIENT_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error", "timeout_error"})
"""Errors of one batched request that another submission may not meet (the rest reject the request itself)."""


@dataclass(frozen=True, slots=True)
class BatchState:
    id: str
    status: Literal["in_progress", "canceling", "ended"]
    processing: int
    succeeded: int
    errored: int
    canceled: int
    expired: int
    created_at: datetime
    expires_at: datetime

    @property
    def ended(self) -> bool:
        return self.status == "ended"

    @property
    def requests(self) -> int:
        return self.processing + self.succeeded + self.errored + self.canceled + self.expired


@dataclass(frozen=True, slots=True)
class BatchItem:
    custom_id: str
    outcome: ItemOutcome
    reply: FrontierReply | None = None
    """The answer, for ``succeeded``."""
    error_type: str | None = None
    """The API error type (e.g. ``overloaded_error``), for ``errored``."""
    error_message: str = ""

    @property
    def transient(self) -> bool:
        """Worth submitting again: expired, canceled, or an error of the service rather than of the request."""
        return self.outcome in ("expired", "canceled") or self.error_type in TRANSIENT_ERROR_TYPES


class MessageBatches:
    def __init__(self, *, api_key: str, base_url: str | None = None, timeout_s: float = 60.0) -> None:
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s,
                                                _strict_response_validation=True)

    async def submit(self, items: Sequence[tuple[str, FrontierRequest]]) -> BatchState:
        requests: list[Request] = [{"custom_id": custom_id, "params": message_params(request)}
                                   for custom_id, request in items]
        with sdk_errors(anthropic, key_hint=KEY_HINT):
            batch = await self._client.messages.batches.create(requests=requests)
        return _state(batch)

    async def state(self, batch_id: str) -> BatchState:
        with sdk_errors(anthropic, key_hint=KEY_HINT):
            return _state(await self._client.messages.batches.retrieve(batch_id))

    async def results(self, batch_id: str) -> AsyncIterator[BatchItem]:
        with sdk_errors(anthropic, key_hint=KEY_HINT):
            lines = await self._client.messages.batches.results(batch_id)
            async for line in lines:
                result = line.result
                if result.type == "succeeded":
                    yield BatchItem(line.custom_id, "succeeded", reply=reply_of(result.message))
                elif result.type == "errored":
                    error = result.error.error
                    yield BatchItem(line.custom_id, "errored", error_type=error.type, error_message=error.message)
                else:
                    yield BatchItem(line.custom_id, result.type)

    async def created_since(self, since: datetime) -> list[BatchState]:
        """Batches created at or after ``since`` (the list is newest first: stop at the first older one)."""
        found: list[BatchState] = []
        with sdk_errors(anthropic, key_hint=KEY_HINT):
            async for batch in self._client.messages.batches.list(limit=100):
                if batch.created_at < since:
                    break
                found.append(_state(batch))
        return found

    async def aclose(self) -> None:
        await self._client.close()


def _state(batch: MessageBatch) -> BatchState:
    counts = batch.request_counts
    return BatchState(id=batch.id, status=batch.processing_status, processing=counts.processing,
                      succeeded=counts.succeeded, errored=counts.errored, canceled=counts.canceled,
                      expired=counts.expired, created_at=batch.created_at, expires_at=batch.expires_at)
