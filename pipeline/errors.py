"""The one exception tree of modcascade.

Every error the library raises on purpose derives from :class:`ModcascadeError`. Third-party errors
(aiokafka, httpx, anthropic, vLLM) are translated at the boundary that calls them and raised
``from`` the original, so callers catch our types and still see the cause.

    ModcascadeError
    ├── ConfigError                 settings or a file the user wrote is wrong; the message names the fix
    │   ├── SettingsError           an environment variable / setting is invalid or unknown
    │   └── PolicyError             a policy file is invalid (carries one PolicyIssue per problem)
    ├── RecordError                 a record could not be decoded or does not fit its contract
    │   └── DecodeError             bytes are not valid JSON / not the expected record (has .reason)
    ├── DecisionError               scores do not fit the policy taxonomy (missing category, NaN, ...)
    ├── BrokerError                 the Kafka broker cannot be reached, started, or refused an operation
    │   └── EmbeddedBrokerError     the bundled tansu broker failed to start or stop
    └── BackendError                a model or frontier backend failed
        ├── BackendUnavailable      the model server cannot be reached / is not healthy (retryable)
        ├── ModelMismatchError      the server serves another model, or its labels do not fit the policy
        ├── InvalidInputError       the texts handed to a classifier are unusable (e.g. empty)
        └── FrontierError           a frontier (adjudicator) call failed; ``kind`` tags it for metrics
            ├── FrontierTransient   429 / 529 / 5xx / timeout / connection: retry (``retry_after`` if the server said)
            └── FrontierRejected    the request itself was refused (400, 401, 403, 404, 413): retrying cannot help

Per-record failures in a stream are *data*, not exceptions: a :class:`DecodeError` is caught by the
stage that decodes and turned into a DeadLetter record; the stream goes on.
"""

from __future__ import annotations

from dataclasses import dataclass


class ModcascadeError(Exception):
    """Root of every error modcascade raises on purpose."""


class ConfigError(ModcascadeError):
    """Something the user configured is wrong. The message says what and how to fix it."""


class SettingsError(ConfigError):
    """An environment variable or setting is invalid or unknown."""


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in one policy file: where it is and what is wrong."""

    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = self.field or "<document>"
        return f"{where}: {field}: {self.message}"


class PolicyError(ConfigError):
    """A policy file is invalid. ``issues`` holds one entry per problem, each printable on one line."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class RecordError(ModcascadeError):
    """A record does not fit its contract."""


class DecodeError(RecordError):
    """Bytes could not be decoded into the expected record.

    ``reason`` is a short machine-friendly tag (``invalid_utf8``, ``invalid_json``, ``not_an_object``,
    ``invalid_record``, ``too_large``) and the message explains it for a human; both go into DeadLetters.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class DecisionError(ModcascadeError):
    """Scores handed to ``decide`` do not fit the policy (missing category, value out of [0, 1])."""


class BrokerError(ModcascadeError):
    """The Kafka broker cannot be reached or refused an operation."""


class EmbeddedBrokerError(BrokerError):
    """The bundled tansu broker could not be started or stopped."""


class BackendError(ModcascadeError):
    """A model or frontier backend failed."""


class BackendUnavailable(BackendError):
    """The model server cannot be reached or is not healthy. Workers retry with backoff on this one."""


class ModelMismatchError(BackendError):
    """The model served is not the one configured, or its labels do not map onto the policy taxonomy."""


class InvalidInputError(BackendError):
    """The input handed to a backend is unusable (for example an empty text)."""


class FrontierError(BackendError):
    """A call to the frontier model failed. ``kind`` is a short tag (rate_limited, overloaded, timeout, ...)."""

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class FrontierTransient(FrontierError):
    """Worth another attempt later: rate limits, overload, server errors, timeouts, connection failures."""


class FrontierRejected(FrontierError):
    """The provider refused the request itself (bad request, auth, unknown model): retrying cannot help."""
