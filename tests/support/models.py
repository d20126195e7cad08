"""The session's model engines, as the model fixtures (``tests/integration/conftest.py``) hand them out."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.backends import Classifier
from pipeline.serving import ModelServer

MAX_LENGTH = 128
"""Tokens per text the test classifiers truncate to."""
MAX_MODEL_LEN = 256
"""The context of the test model server and engine."""


@dataclass
class Engines:
    """The vLLM model server (a process) and the in-process vLLM engine, both on the session's MiniLM."""

    server: ModelServer
    local: Classifier
