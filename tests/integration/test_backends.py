"""The three backends on one real model: same scores, same startup checks, clean shutdown.

The model, the vLLM server and the in-process engine are session fixtures (``conftest.py``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from pipeline.backends import Classifier, make_classifier
from pipeline.backends.vllm_http import RetryPolicy, VllmHttpClassifier
from pipeline.errors import BackendUnavailable, ModelMismatchError
from pipeline.policy import Policy, parse_policy
from pipeline.serving import ModelServer
from tests.support import REPO
from tests.support.models import MAX_LENGTH, Engines

pytestmark = [
    pytest.mark.model,
    # torch 2.13 warns when vLLM's import chain reaches torch.jit.script_method (third-party, unavoidable).
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

TOLERANCE = 1e-3
"""Absolute difference allowed between two backends' probabilities (measured: a few 1e-7)."""

LONG_POST = " ".join(f"buy cheap followers now, offer {i} ends soon, click the link in bio" for i in range(200))
TEXTS = [
    "Good morning everyone, the farmers market opens at nine today.",
    "WIN a free iPhone!!! click bit.ly/xyz now",
    "You are a worthless idiot and everyone at school knows it.",
    "People like them should not be allowed in this country.",
    "DM me for explicit pics, 18+ only",
    "I will find where you live and hurt you.",
    "I don't see the point of going on anymore.",
    "Does anyone know a good recipe for lentil soup?",
    "The match last night was incredible, what a goal in the 90th minute!",
    "Earn $5000 a week from home, no experience needed, limited spots",
    "lol",
    "Reminder: the library is closed on Monday for the holiday.",
    "That referee should be fired, worst call I have ever seen.",
    "Check out my new blog post about sourdough starters.",
    "Historians still debate the causes of the war of 1812.",
    "ur so ugly nobody will ever love u",
    "🎉🎉🎉 congrats to the graduating class!!!",
    "Selling my old bike, barely used, message me if interested.",
    "Is it normal to feel this exhausted after a long run?",
    LONG_POST,  # ~3000 tokens, far beyond the window: truncated to the first MAX_LENGTH tokens everywhere
]


@pytest.fixture
async def http(engines: Engines, minilm_dir: Path, policy: Policy) -> AsyncIterator[VllmHttpClassifier]:
    classifier = make_classifier("vllm-http", minilm_dir, policy, url=engines.server.url, max_length=MAX_LENGTH,
                                 batch_size=8)
    assert isinstance(classifier, VllmHttpClassifier)
    yield classifier
    await classifier.aclose()


@pytest.fixture(scope="session")
async def reference(minilm_dir: Path, policy: Policy) -> AsyncIterator[Classifier]:
    classifier = make_classifier("transformers", minilm_dir, policy, max_length=MAX_LENGTH, batch_size=8)
    yield classifier
    await classifier.aclose()


def top(scores: dict[str, float]) -> str:
    return max(scores, key=scores.__getitem__)


async def test_three_backends_agree(engines: Engines, http: VllmHttpClassifier, reference: Classifier) -> None:
    await http.check()
    results = {
        "transformers": await reference.classify(TEXTS),
        "vllm-local": await engines.local.classify(TEXTS),
        "vllm-http": await http.classify(TEXTS),
    }
    labels = set(reference.labels)
    for name, rows in results.items():
        assert len(rows) == len(TEXTS), name
        assert all(set(row) == labels and abs(sum(row.values()) - 1) < 1e-4 for row in rows), name
    expected = results["transformers"]
    for name in ("vllm-local", "vllm-http"):
        worst = max(abs(row[k] - ref[k]) for row, ref in zip(results[name], expected, strict=True) for k in labels)
        assert worst < TOLERANCE, f"{name} differs from transformers by {worst:.2e}"
        assert [top(row) for row in results[name]] == [top(row) for row in expected], name
    # not a degenerate model: the texts do not all get the same answer
    assert len({top(row) for row in expected}) > 1


async def test_results_follow_input_order(engines: Engines, http: VllmHttpClassifier) -> None:
    forward = await http.classify(TEXTS)
    backward = await http.classify(TEXTS[::-1])
    for row, again in zip(forward, backward[::-1], strict=True):
        assert row == pytest.approx(again, abs=TOLERANCE)
    assert await engines.local.classify([]) == []


async def test_wrong_model_served(engines: Engines, minilm_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "another-model"
    other.mkdir()
    (other / "config.json").write_bytes((minilm_dir / "config.json").read_bytes())
    classifier = VllmHttpClassifier(other, url=engines.server.url)
    try:
        with pytest.raises(ModelMismatchError, match="is serving modcascade-test-minilm, expected another-model: "
                                                     "restart serve-model with --model another-model"):
            await classifier.check()
        with pytest.raises(ModelMismatchError, match="does not serve another-model"):
            await classifier.classify(["hello"])
    finally:
        await classifier.aclose()


async def test_server_down_is_backend_unavailable(minilm_dir: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago; nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    classifier = VllmHttpClassifier(minilm_dir, url=f"http://127.0.0.1:{port}", timeout_s=1.0,
                                    retry=RetryPolicy(retries=2, base_s=0.01, max_s=0.05))
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable, match=f"model server at http://127.0.0.1:{port} is not reachable"):
            await classifier.check()
        with pytest.raises(BackendUnavailable, match="start it with `modcascade serve-model --model DIR`"):
            await classifier.classify(["hello"])
    finally:
        await classifier.aclose()
    assert time.monotonic() - started < 2.0


def test_policy_label_mismatch_fails_at_startup(minilm_dir: Path) -> None:
    data = yaml.safe_load((REPO / "policies" / "default.yaml").read_text("utf-8"))
    data["taxonomy"]["categories"].remove("self_harm")
    data["taxonomy"]["categories"].append("scam")
    data["categories"]["scam"] = data["categories"].pop("self_harm")
    narrower = parse_policy(yaml.safe_dump(data))
    started = time.monotonic()
    with pytest.raises(ModelMismatchError, match=r"does not know: self_harm; the policy expects .* lacks: scam"):
        make_classifier("vllm-local", minilm_dir, narrower)
    assert time.monotonic() - started < 1.0  # checked before any engine is loaded


def test_server_stop_before_start_is_harmless(minilm_dir: Path) -> None:
    server = ModelServer(minilm_dir, port=0)
    server.stop()
    assert not server.running and server.pid is None

