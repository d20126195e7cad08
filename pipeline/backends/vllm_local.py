"""Backend ``vllm-local``: the vLLM engine in this process, ``LLM(runner="pooling").classify``.

For a single worker that owns the machine, and for tests: no server, no HTTP. ``vllm.LLM`` starts its
engine core in a spawned child process, so a script that builds one needs an ``if __name__ == "__main__":``
guard. The engine is blocking and not thread-safe: calls run one at a time in a worker thread.

Shutdown: :meth:`aclose` calls the engine client's ``shutdown()``, which stops the engine core and its
worker gracefully (~4 s on CPU), then waits for the client's output thread and terminates its ZMQ context
(vLLM 0.32 leaves that to the garbage collector, which warns "Unclosed context"). Without ``aclose`` the
engine is only torn down by the interpreter's exit hooks, which force-kill the engine process after a 5 s
grace period and can abort the interpreter ("terminate called without an active exception").

vLLM's own errors are translated here: loading fails with BackendUnavailable, a failed call with BackendError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.backends.base import DEFAULT_MAX_LENGTH, LabelMap, ModelInfo, Scores, check_texts
from pipeline.errors import BackendError, BackendUnavailable

GIB = 1 << 30
_THREAD_JOIN_S = 5.0


class VllmLocalClassifier:
    """An in-process vLLM pooling engine.

    ``max_model_len`` is the engine window; ``max_length`` (<= ``max_model_len``) is where texts are cut
    (vLLM's ``truncate_prompt_tokens``, keeping the head). ``kv_cache_gib`` sizes the KV cache (the CPU
    build otherwise takes a large share of RAM); ``dtype`` float32 matches the transformers backend.
    """

    backend: str = "vllm-local"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        max_model_len: int = 256,
        dtype: str = "float32",
        kv_cache_gib: float = 1.0,
    ) -> None:
        if max_length > max_model_len:
            raise ValueError(f"max_length {max_length} exceeds max_model_len {max_model_len}")
        import vllm

        info = ModelInfo.from_dir(model_dir)
        self.model_name = info.name
        self.model_version = info.version
        self.labels = info.labels
        self._label_map = LabelMap(info.labels)
        self._tokenization: dict[str, Any] = {"truncate_prompt_tokens": max_length}  # see backends.base
        try:
            self._llm: Any = vllm.LLM(
                model=str(info.path),
                served_model_name=info.name,
                runner="pooling",
                dtype=dtype,
                max_model_len=max_model_len,
                enforce_eager=True,
                kv_cache_memory_bytes=int(kv_cache_gib * GIB),
                disable_log_stats=True,
            )
        except Exception as exc:
            raise BackendUnavailable(f"vLLM could not load the model at {info.path} ({_first_line(exc)}): check the "
                                     "model directory and the engine log above") from exc
        self._lock = asyncio.Lock()

    async def classify(self, texts: Sequence[str]) -> list[Scores]:
        check_texts(texts)
        if not texts:
            return []
        async with self._lock:
            if self._llm is None:
                raise BackendUnavailable("the vllm-local classifier is closed: build a new one with make_classifier")
            try:
                rows = await asyncio.to_thread(self.classify_raw, list(texts))
            except Exception as exc:
                raise BackendError(f"the vLLM engine failed to classify {len(texts)} texts "
                                   f"({_first_line(exc)}): see the engine log; restart the worker if it "
                                   "persists") from exc
        return [self._label_map.scores(row) for row in rows]

    def classify_raw(self, texts: list[str]) -> list[list[float]]:
        """The engine's own offline ``LLM.classify``, blocking: probabilities in the model's label order.
        The benchmark's reference; workers use :meth:`classify`."""
        outputs = self._llm.classify(texts, use_tqdm=False, tokenization_kwargs=dict(self._tokenization))
        return [list(output.outputs.probs) for output in outputs]

    async def check(self) -> None:
        """The model was loaded in the constructor: nothing more to check."""

    async def aclose(self) -> None:
        async with self._lock:
            llm, self._llm = self._llm, None
            if llm is not None:
                await asyncio.to_thread(_shutdown, llm)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _shutdown(llm: Any) -> None:
    """Stop the engine, then release the client's ZMQ context (vLLM internals: only what 0.32 has)."""
    client = llm.llm_engine.engine_core
    client.shutdown()
    thread = getattr(client, "output_queue_thread", None)
    if thread is not None:
        thread.join(timeout=_THREAD_JOIN_S)
        if thread.is_alive():
            return  # it still owns a socket: closing the context under it is unsafe
    ctx = getattr(client, "ctx", None)
    if ctx is not None:
        ctx.destroy(linger=0)  # closes any socket left open, then terminates
