"""``modcascade backtest`` decides as the stream does: the seed corpus's posts through the classify worker (embedded
broker, the real vLLM engine) and through the backtest's replay, with the same engine and policy, get the same
decision, and the same posts are drawn for the audit (the default policy with a fifth of its allow verdicts
audited)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.backtest.history import read_history
from pipeline.backtest.replay import replay
from pipeline.backtest.stages import build_stages, lift_budget
from pipeline.policy import load_policy
from pipeline.settings import Settings
from tests.support.cascade import REPO, Stream, cascade_settings, publish, through_classify_worker
from tests.support.kafka import ProducerFactory
from tests.support.models import MAX_LENGTH, Engines

pytestmark = [
    pytest.mark.broker,
    pytest.mark.model,
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
]

POSTS = 400


async def test_a_backtest_decides_every_seed_corpus_post_as_the_classify_worker_does(
        kafka_settings: Settings, _session_topics: list[str], engines: Engines, producer_factory: ProducerFactory,
        tmp_path: Path) -> None:
    default = (REPO / "policies" / "default.yaml").read_text()
    assert default.count("    allow: 0.0  #") == 1
    policy_path = tmp_path / "audited.yaml"
    policy_path.write_text(default.replace("    allow: 0.0  #", "    allow: 0.2  #"))
    settings = await cascade_settings(kafka_settings, policy_path, _session_topics, batch_max_posts=64,
                                      batch_max_wait_ms=20)
    settings = settings.model_copy(update={"model": settings.model.model_copy(update={"max_length": MAX_LENGTH})})
    corpus = (REPO / "pipeline" / "data" / "seed_corpus.jsonl").read_bytes().splitlines()[:POSTS]
    history_file = tmp_path / "history.jsonl"
    history_file.write_bytes(b"\n".join(corpus) + b"\n")
    history = await read_history(history_file)
    assert len(history.posts) == POSTS

    stream = Stream(records=[(p.id.encode(), p.value) for p in history.posts], valid_ids={p.id for p in history.posts})
    await publish(await producer_factory(), settings.topics.all()["posts"], stream.records)
    streamed = await through_classify_worker(settings, stream, engines.local, timeout_s=120)
    in_stream = {v.post_id: (v.decision, v.category) for v in streamed.verdicts}
    in_stream.update({r.post.id: ("escalate", r.candidate_category) for r in streamed.requests if not r.audit})
    audited_in_stream = {r.post.id for r in streamed.requests if r.audit}

    policy = lift_budget(load_policy(policy_path))
    stages = build_stages(settings, policy, engines.local, "labels")
    stages.know(history.posts)
    found = await replay(history.posts, stages.classify, stages.adjudicate, chunk=150)

    in_backtest = {o.id: (o.stage, o.stage_category) for o in found}
    assert len(in_backtest) == len(in_stream) == POSTS
    assert in_backtest == in_stream
    assert {o.id for o in found if o.audited} == audited_in_stream != set()
    kinds = {stage for stage, _ in in_backtest.values()}
    assert {"allow", "escalate"} <= kinds  # not a degenerate comparison
    label = {p.id: p.label for p in history.posts}
    for o in found:
        if o.escalated:  # the history's labels settled every escalation, at no cost
            assert o.route == "frontier" and (o.category or "safe") == label[o.id] and o.cost_usd == 0.0
