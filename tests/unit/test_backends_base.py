"""The backend contract without a model server: ModelInfo, the label check, the input rules, the HTTP
client's batching, retries and error translation (against ``httpx.MockTransport``), and the factory."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.backends import LabelMap, ModelInfo, make_classifier
from pipeline.backends.vllm_http import RetryPolicy, VllmHttpClassifier
from pipeline.errors import BackendError, BackendUnavailable, ConfigError, InvalidInputError, ModelMismatchError
from pipeline.policy import Policy, load_policy

REPO = Path(__file__).resolve().parents[2]
LABELS = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
FAST_RETRY = RetryPolicy(retries=2, base_s=0.001, max_s=0.002)

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.yaml")


def write_model_dir(root: Path, labels: tuple[str, ...] = LABELS, card: dict[str, Any] | None = None) -> Path:
    """A model directory with just the metadata files (no weights): enough for ModelInfo and vllm-http."""
    root.mkdir(parents=True, exist_ok=True)
    id2label = {str(i): name for i, name in enumerate(labels)}
    config = {"architectures": ["BertForSequenceClassification"], "id2label": id2label}
    (root / "config.json").write_text(json.dumps(config))
    if card is not None:
        (root / "model_card.json").write_text(json.dumps(card))
    return root


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return write_model_dir(tmp_path / "minilm-test")


# -- ModelInfo -----------------------------------------------------------------------------------


def test_model_info_from_config_only(model_dir: Path) -> None:
    info = ModelInfo.from_dir(model_dir)
    digest = hashlib.sha256((model_dir / "config.json").read_bytes()).hexdigest()
    assert info.labels == LABELS
    assert info.name == "minilm-test"
    assert info.version == f"unversioned-{digest[:8]}"
    assert info.base_model is None


def test_model_info_from_card(tmp_path: Path) -> None:
    card = {"version": "m-20261124120000-abcdef12", "labels": list(LABELS), "base_model": "all-MiniLM-L6-v2",
            "name": "modcascade-minilm"}
    info = ModelInfo.from_dir(write_model_dir(tmp_path / "m1", card=card))
    assert (info.name, info.version, info.labels, info.base_model) == (
        "modcascade-minilm", "m-20261124120000-abcdef12", LABELS, "all-MiniLM-L6-v2")


def test_model_info_card_without_name_uses_the_directory_name(tmp_path: Path) -> None:
    info = ModelInfo.from_dir(write_model_dir(tmp_path / "m2", card={"version": "v1", "labels": list(LABELS)}))
    assert info.name == "m2"


def test_model_info_card_labels_must_match_the_weights(tmp_path: Path) -> None:
    card = {"version": "v1", "labels": list(reversed(LABELS))}
    with pytest.raises(ModelMismatchError, match=r"differ from config.json id2label.*re-export"):
        ModelInfo.from_dir(write_model_dir(tmp_path / "m3", card=card))


def test_model_info_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist.*MODCASCADE_MODEL_DIR"):
        ModelInfo.from_dir(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"config.json does not exist"):
        ModelInfo.from_dir(tmp_path / "empty")
    (tmp_path / "nolabels").mkdir()
    (tmp_path / "nolabels" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no 'id2label'"):
        ModelInfo.from_dir(tmp_path / "nolabels")


def test_model_info_rejects_left_truncation(model_dir: Path) -> None:
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"truncation_side": "left"}))
    with pytest.raises(ConfigError, match="truncation_side is 'left': set it to \"right\""):
        ModelInfo.from_dir(model_dir)
    (model_dir / "tokenizer_config.json").write_text(json.dumps({"truncation_side": "right"}))
    assert ModelInfo.from_dir(model_dir).labels == LABELS


# -- LabelMap ------------------------------------------------------------------------------------


def test_label_map_accepts_the_taxonomy_in_any_order(policy: Policy) -> None:
    assert LabelMap.for_policy(tuple(reversed(LABELS)), policy).labels == tuple(reversed(LABELS))


def test_label_map_names_extra_labels(policy: Policy) -> None:
    with pytest.raises(ModelMismatchError) as err:
        LabelMap.for_policy((*LABELS, "nudity"), policy)
    message = str(err.value)
    assert "the model has labels the policy does not know: nudity" in message
    assert "lacks" not in message
    assert "retrain" in message and "taxonomy" in message and "\n" not in message


def test_label_map_names_missing_labels(policy: Policy) -> None:
    labels = tuple(label for label in LABELS if label not in {"hate", "spam"})
    with pytest.raises(ModelMismatchError, match="the policy expects labels the model lacks: hate, spam: retrain"):
        LabelMap.for_policy(labels, policy)


def test_label_map_names_both(policy: Policy) -> None:
    with pytest.raises(ModelMismatchError, match=r"does not know: gore; the policy expects .* lacks: violence"):
        LabelMap.for_policy(tuple("gore" if label == "violence" else label for label in LABELS), policy)


def test_label_map_rejects_duplicates_and_wrong_widths() -> None:
    with pytest.raises(ModelMismatchError, match=r"\['spam'\] appear more than once"):
        LabelMap(("safe", "spam", "spam"))
    with pytest.raises(ModelMismatchError, match="returned 2 probabilities for a model with 7 labels"):
        LabelMap(LABELS).scores([0.5, 0.5])
    with pytest.raises(BackendError, match="non-finite"):
        LabelMap(("a", "b")).scores([float("nan"), 1.0])


# -- vllm-http against a mock server -------------------------------------------------------------


def classify_handler(seen: list[dict[str, Any]], order: str = "reversed") -> Handler:
    """Answers /classify like vLLM; probs put all mass on label ``len(text) % 7`` so results are checkable."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append({**body, "header_id": request.headers.get("x-request-id")})
        data = []
        for index, text in enumerate(body["input"]):
            probs = [0.0] * len(LABELS)
            probs[len(text) % len(LABELS)] = 1.0
            data.append({"index": index, "label": None, "probs": probs, "num_classes": len(LABELS)})
        if order == "reversed":
            data.reverse()
        return httpx.Response(200, json={"id": "x", "object": "list", "created": 0, "model": body["model"],
                                         "data": data, "usage": {}})

    return handle


def http_classifier(model_dir: Path, handler: Handler, **options: Any) -> VllmHttpClassifier:
    options.setdefault("retry", FAST_RETRY)
    return VllmHttpClassifier(model_dir, url="http://model.test:8000/", transport=httpx.MockTransport(handler),
                              **options)


async def test_http_batches_preserve_order_and_ask_for_truncation(model_dir: Path) -> None:
    seen: list[dict[str, Any]] = []
    classifier = http_classifier(model_dir, classify_handler(seen), batch_size=3, max_length=100)
    texts = ["a" * n for n in range(1, 9)]
    try:
        results = await classifier.classify(texts)
    finally:
        await classifier.aclose()
    assert [max(r, key=r.__getitem__) for r in results] == [LABELS[len(t) % 7] for t in texts]
    assert all(set(r) == set(LABELS) for r in results)
    assert sorted(len(b["input"]) for b in seen) == [2, 3, 3]
    assert {(b["model"], b["truncate_prompt_tokens"], "truncation_side" in b) for b in seen} == {
        ("minilm-test", 100, False)}
    ids = [b["request_id"] for b in seen]
    assert len(set(ids)) == 3 and all(b["header_id"] == b["request_id"] for b in seen)


async def test_http_requests_pack_by_token_budget_shortest_first(model_dir: Path) -> None:
    seen: list[dict[str, Any]] = []
    classifier = http_classifier(model_dir, classify_handler(seen), batch_size=64, batch_tokens=90, max_length=100)
    texts = ["long " * 60 if i % 3 == 0 else f"short {i}" for i in range(9)]  # ~77 and ~3 estimated tokens
    try:
        results = await classifier.classify(texts)
    finally:
        await classifier.aclose()
    assert [max(r, key=r.__getitem__) for r in results] == [LABELS[len(t) % 7] for t in texts]  # back in order
    # Each long post fills a request alone (two would pass the budget); the six short ones go together, first.
    assert sorted(len(b["input"]) for b in seen) == [1, 1, 1, 6]
    assert all(len(b["input"]) == 1 for b in seen if b["input"][0].startswith("long"))


async def test_empty_batch_and_empty_texts(model_dir: Path) -> None:
    seen: list[dict[str, Any]] = []
    classifier = http_classifier(model_dir, classify_handler(seen))
    try:
        assert await classifier.classify([]) == []
        with pytest.raises(InvalidInputError, match=r"text 1 is empty.*dead-letters empty posts"):
            await classifier.classify(["fine", " \n\t"])
        with pytest.raises(InvalidInputError, match="text 0 "):
            await classifier.classify([""])
    finally:
        await classifier.aclose()
    assert seen == []


async def test_http_retries_5xx_then_succeeds(model_dir: Path) -> None:
    calls: list[int] = []
    ok = classify_handler([])

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503) if len(calls) < 3 else ok(request)

    classifier = http_classifier(model_dir, flaky)
    try:
        assert len(await classifier.classify(["hello"])) == 1
    finally:
        await classifier.aclose()
    assert len(calls) == 3


async def test_http_gives_up_with_backend_unavailable(model_dir: Path) -> None:
    calls: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("connection refused", request=request)

    classifier = http_classifier(model_dir, refuse)
    try:
        with pytest.raises(BackendUnavailable) as err:
            await classifier.classify(["hello"])
    finally:
        await classifier.aclose()
    assert len(calls) == 3  # the first attempt and FAST_RETRY's 2 retries
    assert "model server at http://model.test:8000 is not reachable (ConnectError: connection refused, 3 attempts)" \
           in str(err.value)
    assert "`modcascade serve-model --model DIR` or fix MODCASCADE_MODEL_SERVER_URL" in str(err.value)


async def test_http_client_errors_are_not_retried(model_dir: Path) -> None:
    calls: list[int] = []

    def reject(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        status = 404 if b"wrong" in request.content else 400
        return httpx.Response(status, json={"error": {"message": "The model does not exist.\n", "code": status}})

    classifier = http_classifier(model_dir, reject)
    try:
        with pytest.raises(ModelMismatchError, match=r"does not serve minilm-test .*restart serve-model"):
            await classifier.classify(["wrong"])
        with pytest.raises(BackendError, match=r"rejected POST /classify with HTTP 400 .*: The model does not exist.$"):
            await classifier.classify(["other"])
    finally:
        await classifier.aclose()
    assert len(calls) == 2


def models_handler(served: str, max_model_len: int = 256) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200)
        return httpx.Response(200, json={"object": "list", "data": [
            {"id": served, "object": "model", "root": "/models/x", "max_model_len": max_model_len}]})

    return handle


async def test_http_check(model_dir: Path) -> None:
    good = http_classifier(model_dir, models_handler("minilm-test"))
    wrong = http_classifier(model_dir, models_handler("other-model"))
    narrow = http_classifier(model_dir, models_handler("minilm-test", max_model_len=64), max_length=128)
    try:
        await good.check()
        with pytest.raises(ModelMismatchError, match="is serving other-model, expected minilm-test: restart "
                                                     "serve-model with --model minilm-test"):
            await wrong.check()
        with pytest.raises(ConfigError, match="MAX_LENGTH=128 exceeds the server's max_model_len 64"):
            await narrow.check()
    finally:
        for classifier in (good, wrong, narrow):
            await classifier.aclose()


# -- factory -------------------------------------------------------------------------------------


async def test_factory_builds_and_checks_labels(tmp_path: Path, model_dir: Path, policy: Policy) -> None:
    classifier = make_classifier("vllm-http", model_dir, policy, url="http://model.test:1")
    try:
        assert (classifier.backend, classifier.model_name, classifier.labels) == ("vllm-http", "minilm-test", LABELS)
    finally:
        await classifier.aclose()
    other = write_model_dir(tmp_path / "other", labels=("safe", "spam"))
    with pytest.raises(ModelMismatchError, match="lacks: harassment, hate, self_harm, sexual, violence"):
        make_classifier("vllm-http", other, policy, url="http://model.test:1")


def test_factory_rejects_unknown_kinds_and_options(model_dir: Path, policy: Policy) -> None:
    with pytest.raises(ConfigError, match="unknown classifier backend 'onnx': use one of vllm-http, vllm-local"):
        make_classifier("onnx", model_dir, policy)
    with pytest.raises(ConfigError, match="backend vllm-http takes no option threads: it takes batch_size"):
        make_classifier("vllm-http", model_dir, policy, url="http://x", threads=2)


# -- the model server's environment ----------------------------------------------------------------


def test_the_model_server_leaves_vllm_its_cpu_reservation_unless_told(model_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.serving import ModelServer

    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in ModelServer(model_dir).environment()
    env = ModelServer(model_dir, reserved_cpus=0, kv_cache_gib=2).environment()
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
