"""Backend ``transformers``: plain PyTorch inference with the HF tokenizer, no vLLM.

The reference the vLLM backends are compared with, and a fallback where vLLM is not installed. The model
runs in a worker thread (``asyncio.to_thread``) so the event loop stays free; one call at a time (a lock),
because parallel calls would only fight over the same cores. This module tokenizes; padding, the forward pass
and the softmax, on ``device`` in ``dtype``, are :class:`pipeline.torch_batch.BatchScorer` (the GPU bench runs
that same code). The defaults (CPU, float32, fixed batches in input order) are the reference; on a GPU use
``device="cuda", dtype="bfloat16"`` and a ``max_batch_tokens`` budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.backends.base import DEFAULT_MAX_LENGTH, LabelMap, ModelInfo, Scores, check_texts
from pipeline.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from pipeline.torch_batch import BatchScorer, DType


class TransformersClassifier:
    """``AutoModelForSequenceClassification`` + softmax, in ``torch.inference_mode``, batch by batch.

    ``threads`` calls ``torch.set_num_threads``, which is process-wide; ``None`` leaves torch's default.
    ``device`` is ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``dtype`` is ``"float32"`` or ``"bfloat16"``.
    ``max_batch_tokens`` batches by token budget (shortest texts first, at most ``batch_size`` per batch; see
    :mod:`pipeline.torch_batch`); ``None`` keeps fixed batches of ``batch_size`` in input order.
    Loading happens in the constructor (seconds): build it at startup, not per request.
    """

    backend: str = "transformers"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 64,
        threads: int | None = None,
        device: str = "cpu",
        dtype: DType = "float32",
        max_batch_tokens: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from pipeline.torch_batch import BatchScorer, check_device, torch_dtype

        info = ModelInfo.from_dir(model_dir)
        try:
            check_device(device)
            weights = torch_dtype(dtype)
        except ValueError as exc:
            raise ConfigError(f"transformers backend: {exc}") from exc
        except RuntimeError as exc:
            raise BackendUnavailable(f"transformers backend: {exc}") from exc
        self.model_name = info.name
        self.model_version = info.version
        self.labels = info.labels
        self._label_map = LabelMap(info.labels)
        self._max_length = max_length
        if threads is not None:
            torch.set_num_threads(threads)
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(info.path), local_files_only=True)
        if self._tokenizer.pad_token_id is None:
            raise ConfigError(f"the tokenizer in {info.path} has no padding token: set pad_token in its "
                              "tokenizer_config.json (batches are padded)")
        model: Any = AutoModelForSequenceClassification.from_pretrained(
            str(info.path), local_files_only=True, dtype=weights
        )
        try:
            self._scorer: BatchScorer | None = BatchScorer(
                model.to(device).eval(), pad_token_id=self._tokenizer.pad_token_id, device=device,
                batch_size=batch_size, max_batch_tokens=max_batch_tokens)
        except ValueError as exc:
            raise ConfigError(f"transformers backend: {exc}") from exc
        self._lock = asyncio.Lock()

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        check_texts(texts)
        if not texts:
            return []
        async with self._lock:
            scorer = self._scorer
            if scorer is None:
                raise BackendUnavailable("the transformers classifier is closed: build a new one with make_classifier")
            rows = await asyncio.to_thread(self._run, scorer, list(texts))
        return [self._label_map.scores(row) for row in rows]

    def _run(self, scorer: BatchScorer, texts: list[str]) -> list[list[float]]:
        encoded = self._tokenizer(texts, truncation=True, max_length=self._max_length)  # keep the head: see base
        return scorer.score(encoded["input_ids"])

    async def check(self) -> None:
        """The model was loaded in the constructor: nothing more to check."""

    async def aclose(self) -> None:
        async with self._lock:
            self._scorer = None
            self._tokenizer = None
