"""Backend ``transformers``: plain PyTorch inference with the HF tokenizer, no vLLM.

The reference the vLLM backends are compared with, and a fallback where vLLM is not installed. The model
runs in a worker thread (``asyncio.to_thread``) so the event loop stays free; one call at a time (a lock),
because parallel calls would only fight over the same cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.backends.base import DEFAULT_MAX_LENGTH, LabelMap, ModelInfo, Scores, check_texts
from pipeline.errors import BackendUnavailable


class TransformersClassifier:
    """``AutoModelForSequenceClassification`` + softmax, in ``torch.inference_mode``, batch by batch.

    ``threads`` calls ``torch.set_num_threads``, which is process-wide; ``None`` leaves torch's default.
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
    ) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        info = ModelInfo.from_dir(model_dir)
        self.model_name = info.name
        self.model_version = info.version
        self.labels = info.labels
        self._label_map = LabelMap(info.labels)
        self._max_length = max_length
        self._batch_size = batch_size
        if threads is not None:
            torch.set_num_threads(threads)
        self._torch: Any = torch
        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(info.path), local_files_only=True)
        model: Any = AutoModelForSequenceClassification.from_pretrained(
            str(info.path), local_files_only=True, dtype=torch.float32
        )
        self._model: Any = model.eval()
        self._lock = asyncio.Lock()

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        check_texts(texts)
        if not texts:
            return []
        async with self._lock:
            if self._model is None:
                raise BackendUnavailable("the transformers classifier is closed: build a new one with make_classifier")
            rows = await asyncio.to_thread(self._run, list(texts))
        return [self._label_map.scores(row) for row in rows]

    def _run(self, texts: list[str]) -> list[list[float]]:
        torch = self._torch
        rows: list[list[float]] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self._batch_size):
                batch = self._tokenizer(
                    texts[start:start + self._batch_size],
                    padding=True,
                    truncation=True,  # keep the head: see pipeline.backends.base
                    max_length=self._max_length,
                    return_tensors="pt",
                )
                logits = self._model(**batch).logits
                rows.extend(torch.softmax(logits.float(), dim=-1).tolist())
        return rows

    async def check(self) -> None:
        """The model was loaded in the constructor: nothing more to check."""

    async def aclose(self) -> None:
        async with self._lock:
            self._model = None
            self._tokenizer = None
