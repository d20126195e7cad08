"""Score token-id rows with a sequence classifier on a device, batch by batch: pad, forward, softmax.

The core of the ``transformers`` backend (:mod:`pipeline.backends.transformers_backend` tokenizes, this runs the
model), kept apart so that it imports only torch: the GPU bench (:mod:`pipeline.bench.gpu_small_model`) runs this
very code on a machine that has PyTorch and transformers and none of the project's other dependencies. Importing
anything under ``pipeline.backends`` would load the package ``__init__`` and, through it, orjson and pydantic.

Batches (:func:`plan_batches`). Without a token budget: chunks of ``batch_size`` rows in input order, each padded
to its longest row (the backend's default, unchanged). With ``max_batch_tokens``: rows are taken shortest first
and a batch closes when one more row would take it past ``batch_size`` rows or its padded size (rows x longest
row) past the budget, so one long post does not pad a batch of short ones to its length; a single row longer
than the budget is a batch of its own. Scores come back in input order either way, and a row's scores do not
depend on the batch it landed in (padding is masked, rows are padded on the right).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal

import torch

DType = Literal["float32", "bfloat16"]
DTYPES: Final[dict[str, torch.dtype]] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    """``"float32"`` or ``"bfloat16"`` as a torch dtype; anything else is a ValueError that names both."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype {name!r} is not supported: use one of {', '.join(DTYPES)}") from None


def check_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a CUDA device that torch cannot see is a RuntimeError."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported: use 'cpu', 'cuda' or 'cuda:N'")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {device!r} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
    return parsed


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None) -> list[list[int]]:
    """Indices of the rows of each batch (see the module docstring); every index appears exactly once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if max_batch_tokens is None:
        return [list(range(start, min(start + batch_size, len(lengths))))
                for start in range(0, len(lengths), batch_size)]
    if max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be at least 1 (or None for no budget), not {max_batch_tokens}")
    batches: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):  # stable: ties keep input order
        longest = max(lengths[index], 1)  # ascending, so the newest row is the longest
        if current and (len(current) == batch_size or (len(current) + 1) * longest > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class BatchScorer:
    """Softmax probabilities of a ``*ForSequenceClassification`` model for token-id rows, on the model's device.

    ``model`` must already be on ``device`` in its dtype, in eval mode. ``pad_token_id`` fills the right of
    short rows (masked out; decoder classifiers find each row's last real token through the same id, so it
    must be the model config's ``pad_token_id``). Not thread-safe: one ``score`` call at a time.
    """

    def __init__(self, model: Any, *, pad_token_id: int, device: str = "cpu", batch_size: int = 64,
                 max_batch_tokens: int | None = None) -> None:
        plan_batches([], batch_size, max_batch_tokens)  # reject bad sizes now, not at the first call
        self.model = model
        self.device = check_device(device)
        self.pad_token_id = pad_token_id
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens

    def score(self, rows: Sequence[Sequence[int]]) -> list[list[float]]:
        """One probability row per token-id row, in input order; rows must be non-empty."""
        out: list[list[float]] = [[] for _ in rows]
        with torch.inference_mode():
            for batch in plan_batches([len(row) for row in rows], self.batch_size, self.max_batch_tokens):
                for index, probs in zip(batch, self.forward([rows[i] for i in batch]), strict=True):
                    out[index] = probs
        return out

    def forward(self, rows: Sequence[Sequence[int]]) -> list[list[float]]:
        """One batch as given (no planning): pad, run the model, softmax in float32, back to Python lists."""
        input_ids, attention_mask = self.pad(rows)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        probs: list[list[float]] = torch.softmax(logits.float(), dim=-1).tolist()  # .tolist() waits for the GPU
        return probs

    def pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (rows x longest, right-padded), on the device."""
        longest = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
            attention_mask[i, :len(row)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)
