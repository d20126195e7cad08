"""Scripted stand-ins for the frontier APIs, for tests that run the real ``anthropic`` and ``openai`` SDKs.

    anthropic_server   MessagesServer: ``/v1/messages`` and the Message Batches API, answering what a test scripted
    anthropic_wire     its wire format: Reply, Usage, RecordedRequest, request validation, simulated usage
    anthropic_batches  its Message Batches: BatchRecord and batch-body validation
    openai_server      ChatServer: ``/v1/chat/completions`` (ChatReply, ChatUsage)
"""

from tests.support.frontier.anthropic_batches import BATCH_TTL, BatchRecord, BatchStatus
from tests.support.frontier.anthropic_server import MessagesServer
from tests.support.frontier.anthropic_wire import (
    ERROR_STATUS,
    BatchOutcome,
    RecordedRequest,
    Reply,
    Responder,
    Usage,
    system_text,
    user_text,
)
from tests.support.frontier.openai_server import ChatReply, ChatRequest, ChatServer, ChatUsage

__all__ = [
    "BATCH_TTL",
    "ERROR_STATUS",
    "BatchOutcome",
    "BatchRecord",
    "BatchStatus",
    "ChatReply",
    "ChatRequest",
    "ChatServer",
    "ChatUsage",
    "MessagesServer",
    "RecordedRequest",
    "Reply",
    "Responder",
    "Usage",
    "system_text",
    "user_text",
]
