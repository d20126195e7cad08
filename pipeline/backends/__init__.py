"""Classifier backends (docs/classifier.md, "Serving and backends"): the small model behind one async interface.

Every backend has the same shape, so a reader who knows one knows all:

    base                    Classifier protocol, ModelInfo, LabelMap (startup label check), input/truncation rules
    transformers_backend    plain PyTorch + HF tokenizer in a worker thread (no vLLM; reference and fallback)
    vllm_local              in-process ``vllm.LLM(runner="pooling").classify`` in a worker thread
    vllm_http               the vLLM OpenAI-compatible server's ``/classify`` over one pooled httpx client
    factory                 make_classifier(kind, model_dir, policy, ...): build one and run the label check

The model server itself (a vLLM subprocess) lives in :mod:`pipeline.serving`. The heavy ML imports (torch,
transformers, vllm) happen when a backend is built, never at import of this package.
"""

from pipeline.backends.base import (
    BACKENDS,
    DEFAULT_MAX_LENGTH,
    BackendKind,
    Classifier,
    LabelMap,
    ModelInfo,
    Scores,
    check_texts,
)
from pipeline.backends.factory import make_classifier

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_LENGTH",
    "BackendKind",
    "Classifier",
    "LabelMap",
    "ModelInfo",
    "Scores",
    "check_texts",
    "make_classifier",
]
