"""The one contract every classifier backend implements, and what they share.

    Classifier   the protocol: ``await classify(texts) -> [label -> probability]`` and ``await aclose()``
    ModelInfo    name, version and labels of a model directory (``model_card.json``, else ``config.json``)
    LabelMap     the model's labels in id order; ``for_policy`` is the startup check against a taxonomy
    check_texts  the input rule every backend applies before it does any work

Truncation (the one place it is decided): a text longer than the model window is truncated to its first
``max_length`` tokens, special tokens included; the head is kept because the start of a post carries the
most signal. Over-long texts are never an error. Every backend makes the tokenizer do it, the same way:
``truncation=True, max_length`` for transformers, ``truncate_prompt_tokens=max_length`` for vLLM (which then
calls the tokenizer with exactly those arguments), so the three give the same scores for the same text.
Do not pass vLLM's ``truncation_side``: with it, vLLM tokenizes the whole text and slices the token list,
which cuts off the closing ``[SEP]`` and shifts scores by ~1e-2. The tokenizer's own side must therefore be
"right"; :meth:`ModelInfo.from_dir` rejects a model whose ``tokenizer_config.json`` says "left".

Input rule: an empty batch returns ``[]``; an empty or whitespace-only text is a bug in the caller (intake
dead-letters empty posts) and raises :class:`InvalidInputError` naming its index.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from pipeline import codec
from pipeline.errors import BackendError, ConfigError, DecodeError, InvalidInputError, ModelMismatchError
from pipeline.policy import Policy

BackendKind = Literal["vllm-http", "vllm-local", "transformers"]
BACKENDS: Final[tuple[BackendKind, ...]] = ("vllm-http", "vllm-local", "transformers")

DEFAULT_MAX_LENGTH: Final = 128
"""Tokens per text (special tokens included) when a backend is not told otherwise."""

CARD_FILE: Final = "model_card.json"
CONFIG_FILE: Final = "config.json"
TOKENIZER_CONFIG_FILE: Final = "tokenizer_config.json"

Scores = dict[str, float]
"""One text's result: label -> probability; the probabilities of one text sum to 1."""


class Classifier(Protocol):
    """A small-model backend. Results preserve input order; one dict per text, every label present."""

    backend: str
    """``"vllm-http"``, ``"vllm-local"`` or ``"transformers"``."""
    model_name: str
    model_version: str
    labels: tuple[str, ...]
    """The model's labels in its id order."""

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        """Score each text; see the module docstring for the input and truncation rules."""
        ...

    async def check(self) -> None:
        """Startup check that the backend can serve this model (a server is up and serves it); in-process
        backends loaded the model when they were built, so theirs passes at once."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources (engine, threads, connections). Safe to call twice."""
        ...


def check_texts(texts: Sequence[str]) -> None:
    """Raise :class:`InvalidInputError` for the first empty or whitespace-only text."""
    for index, text in enumerate(texts):
        if not text.strip():
            raise InvalidInputError(f"text {index} is empty or whitespace-only: intake dead-letters empty posts; "
                                    "do not pass them")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the pipeline needs to know about a model directory before loading it."""

    path: Path
    name: str
    """Served model name: the card's ``name``, else the directory's name (symlinks resolved)."""
    version: str
    """The card's ``version``, else ``unversioned-<first 8 hex of sha256(config.json)>``."""
    labels: tuple[str, ...]
    """Labels in the model's id order (``config.json`` ``id2label``)."""
    base_model: str | None = None

    @classmethod
    def from_dir(cls, model_dir: str | Path) -> ModelInfo:
        """Read ``model_card.json`` if present, else ``config.json``; errors name the file and the fix."""
        path = Path(model_dir)
        if not path.is_dir():
            raise ConfigError(f"model directory {path} does not exist: train a model into it or fix "
                              "MODCASCADE_MODEL_DIR")
        config_bytes = _read(path / CONFIG_FILE)
        config = _parse(path / CONFIG_FILE, config_bytes)
        config_labels = _id2label(path / CONFIG_FILE, config)
        _check_truncation_side(path / TOKENIZER_CONFIG_FILE)
        card_path = path / CARD_FILE
        name = path.resolve().name
        if not card_path.is_file():
            version = "unversioned-" + hashlib.sha256(config_bytes).hexdigest()[:8]
            return cls(path=path, name=name, version=version, labels=config_labels)

        card = _parse(card_path, _read(card_path))
        card_version = card.get("version")
        if not isinstance(card_version, str) or not card_version:
            raise ConfigError(f"{card_path}: 'version' is missing or not a string: re-export the model card")
        labels = card.get("labels")
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ConfigError(f"{card_path}: 'labels' is missing or not a list of strings: re-export the model card")
        if tuple(labels) != config_labels:
            raise ModelMismatchError(f"{card_path}: labels {labels} differ from {CONFIG_FILE} id2label "
                                     f"{list(config_labels)}: re-export the model (the card must match the weights)")
        card_name = card.get("name")
        base_model = card.get("base_model")
        return cls(
            path=path,
            name=card_name if isinstance(card_name, str) and card_name else name,
            version=card_version,
            labels=config_labels,
            base_model=base_model if isinstance(base_model, str) else None,
        )


def _read(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{file} does not exist: point MODCASCADE_MODEL_DIR at a model saved with "
                          "save_pretrained") from None
    except OSError as exc:
        raise ConfigError(f"{file} cannot be read ({exc.strerror}): check its permissions") from exc


def _parse(file: Path, data: bytes) -> dict[str, Any]:
    try:
        obj = codec.loads(data)
    except DecodeError as exc:
        raise ConfigError(f"{file}: {exc}: re-export the model") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{file}: expected a JSON object: re-export the model")
    return obj


def _check_truncation_side(file: Path) -> None:
    if not file.is_file():
        return
    side = _parse(file, _read(file)).get("truncation_side", "right")
    if side != "right":
        raise ConfigError(f"{file}: truncation_side is {side!r}: set it to \"right\" (long posts keep their "
                          "head; see pipeline.backends.base)")


def _id2label(file: Path, config: dict[str, Any]) -> tuple[str, ...]:
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{file}: no 'id2label': save a sequence-classification model with its labels")
    try:
        by_id = {int(key): value for key, value in raw.items()}
    except ValueError:
        raise ConfigError(f"{file}: id2label keys must be integers: re-export the model") from None
    if sorted(by_id) != list(range(len(by_id))) or not all(isinstance(v, str) for v in by_id.values()):
        raise ConfigError(f"{file}: id2label must map 0..N-1 to label names: re-export the model")
    return tuple(by_id[i] for i in range(len(by_id)))


@dataclass(frozen=True, slots=True)
class LabelMap:
    """The model's labels in id order; turns one row of probabilities into :data:`Scores`."""

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        duplicates = sorted({label for label in self.labels if self.labels.count(label) > 1})
        if duplicates:
            raise ModelMismatchError(f"model labels {duplicates} appear more than once: retrain the model "
                                     "with distinct labels")

    @classmethod
    def for_policy(cls, model_labels: Sequence[str], policy: Policy) -> LabelMap:
        """The startup check: the model's labels and the policy taxonomy (safe + categories) are the same set."""
        label_map = cls(tuple(model_labels))
        taxonomy = policy.taxonomy
        expected = {taxonomy.safe, *taxonomy.categories}
        have = set(label_map.labels)
        if have == expected:
            return label_map
        problems = []
        if extra := sorted(have - expected):
            problems.append(f"the model has labels the policy does not know: {', '.join(extra)}")
        if missing := sorted(expected - have):
            problems.append(f"the policy expects labels the model lacks: {', '.join(missing)}")
        raise ModelMismatchError(f"model labels do not fit policy '{policy.name}': {'; '.join(problems)}: retrain "
                                 "the model on the policy taxonomy, or edit the policy's taxonomy to match the model")

    def scores(self, probs: Sequence[float]) -> Scores:
        """Map one row of probabilities (model id order) onto the labels."""
        if len(probs) != len(self.labels):
            raise ModelMismatchError(f"the backend returned {len(probs)} probabilities for a model with "
                                     f"{len(self.labels)} labels: serve the model the pipeline is configured with")
        row = dict(zip(self.labels, (float(p) for p in probs), strict=True))
        if not all(math.isfinite(p) for p in row.values()):
            raise BackendError(f"the backend returned non-finite probabilities {row}: check the model weights")
        return row
