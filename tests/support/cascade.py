"""Helpers for the cascade's broker tests: a namespaced set of topics, a stream of posts, and an
accounting of the outputs by post id (the no-loss promise is checked per id, never by totals)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from pipeline import codec
from pipeline.backends.base import Classifier
from pipeline.kafka import ensure_topics
from pipeline.kafka.readback import Message, TopicReader, send_all
from pipeline.metrics import Metrics
from pipeline.records import AdjudicationRequest, DeadLetter, Verdict
from pipeline.services import run_classify_worker
from pipeline.settings import Settings, TopicNames
from tests.support.kafka import unique

REPO = Path(__file__).resolve().parents[2]

TEXTS = [
    "Good morning everyone, the farmers market opens at nine today.",
    "WIN a free iPhone!!! click bit.ly/xyz now",
    "You are a worthless idiot and everyone at school knows it.",
    "DM me for explicit pics, 18+ only",
    "I will find where you live and hurt you.",
    "Does anyone know a good recipe for lentil soup?",
    "Earn $5000 a week from home, no experience needed, limited spots",
    "That referee should be fired, worst call I have ever seen.",
]
MALFORMED: tuple[bytes, ...] = (b'{"id": "bad", "text": ', b'{"text": "no id"}', b'{"id": "u", "text": "\xff\xfe"}',
                                b'{"id": "e", "text": "   "}', b"[1, 2, 3]")


async def cascade_settings(base: Settings, policy_path: Path, names: list[str], **worker: object) -> Settings:
    """``base`` with its own prefixed topics (created now, recorded in ``names`` for deletion), the policy
    file, short group sessions (quick rejoin after a kill) and the given worker settings."""
    prefix = unique("cascade") + "-"
    topics = TopicNames(prefix=prefix)
    session = 2000 if base.uses_embedded_broker else 6000
    settings = base.model_copy(update={
        "topics": topics,
        "policy_path": policy_path,
        "metrics_port": 0,
        "kafka": base.kafka.model_copy(update={"session_timeout_ms": session, "heartbeat_interval_ms": 200}),
        "worker": base.worker.model_copy(update={"group_id": prefix + "classify", **worker}),
    })
    await ensure_topics(settings)
    names.extend(topics.all().values())
    return settings


@dataclass
class Stream:
    """Posts to publish: valid ones by id, malformed ones by the offset-independent marker in their key."""

    records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value)
    valid_ids: set[str] = field(default_factory=set)
    malformed_keys: set[str] = field(default_factory=set)


def make_stream(n: int, *, malformed_every: int = 50, seed: int = 3, prefix: str = "p") -> Stream:
    """``n`` records; one in ``malformed_every`` is malformed (keyed ``bad-<i>`` so it can be traced)."""
    rng = random.Random(seed)
    stream = Stream()
    for i in range(n):
        if i % malformed_every == malformed_every - 1:
            key = f"bad-{prefix}{i}"
            stream.records.append((key.encode(), MALFORMED[i % len(MALFORMED)]))
            stream.malformed_keys.add(key)
            continue
        post_id = f"{prefix}{i}"
        text = rng.choice(TEXTS) + ("" if rng.random() < 0.3 else f" #{rng.randrange(10_000)}")
        stream.records.append((post_id.encode(), codec.dumps({"id": post_id, "text": text})))
        stream.valid_ids.add(post_id)
    return stream


async def publish(producer: AIOKafkaProducer, topic: str, records: Sequence[tuple[bytes, bytes]],
                  rate_per_s: float | None = None) -> None:
    """Publish records (at ``rate_per_s`` when given) and wait for every acknowledgement."""
    await send_all(producer, topic, records, rate_per_s=rate_per_s)


@dataclass
class Outputs:
    verdicts: list[Verdict] = field(default_factory=list)
    requests: list[AdjudicationRequest] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def ids(self) -> Counter[str]:
        """How many outputs each valid post id got (a verdict or an adjudication request)."""
        return Counter([v.post_id for v in self.verdicts] + [r.post.id for r in self.requests])

    def dead_keys(self) -> Counter[str]:
        return Counter(d.original_key or "" for d in self.dead_letters)

    def complete(self, stream: Stream) -> bool:
        return stream.valid_ids <= set(self.ids()) and stream.malformed_keys <= set(self.dead_keys())


async def collect(settings: Settings, stream: Stream, *, timeout_s: float, quiet_s: float = 1.0) -> Outputs:
    """Read verdicts, adjudication and dead-letter from the start until every post of ``stream`` has an
    output (then until nothing more comes for ``quiet_s``, so duplicates show up) or ``timeout_s`` passes."""
    topics = settings.topics.all()
    outputs = [topics["verdicts"], topics["adjudication"], topics["dead_letter"]]

    out = Outputs()
    decoded = 0

    def complete(messages: list[Message]) -> bool:
        nonlocal decoded
        for m in messages[decoded:]:
            assert m.value is not None
            if m.topic == topics["verdicts"]:
                out.verdicts.append(codec.decode(m.value, Verdict))
            elif m.topic == topics["adjudication"]:
                out.requests.append(codec.decode(m.value, AdjudicationRequest))
            else:
                out.dead_letters.append(codec.decode(m.value, DeadLetter))
        decoded = len(messages)
        return out.complete(stream)

    async with TopicReader.open(settings, outputs) as reader:
        with contextlib.suppress(TimeoutError):  # the caller's accounting says what is missing
            await reader.read_until(complete, timeout_s=timeout_s, quiet_s=quiet_s)
        complete(reader.messages)  # what came during the quiet period
    return out


async def through_classify_worker(settings: Settings, stream: Stream, classifier: Classifier, *,
                                  timeout_s: float) -> Outputs:
    """Run the classify worker (in this process, its own metrics) until every post of ``stream``, published
    already, has an output (:func:`collect`); stop it and return what it published."""
    stop = asyncio.Event()
    worker = asyncio.create_task(run_classify_worker(settings, stop, classifier=classifier,
                                                     metrics=Metrics.create(CollectorRegistry())))
    try:
        return await collect(settings, stream, timeout_s=timeout_s)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)


def assert_accounted(stream: Stream, out: Outputs, *, duplicates_allowed: bool) -> None:
    """Every valid post has a verdict or an adjudication request, every malformed record one dead letter,
    and nothing else came out; checked id by id."""
    ids, dead = out.ids(), out.dead_keys()
    missing = sorted(stream.valid_ids - set(ids))
    assert not missing, f"{len(missing)} posts have no output, e.g. {missing[:5]}"
    assert set(ids) == stream.valid_ids, f"outputs for unknown posts: {sorted(set(ids) - stream.valid_ids)[:5]}"
    missing_dead = sorted(stream.malformed_keys - set(dead))
    assert not missing_dead, f"malformed records without a dead letter: {missing_dead[:5]}"
    assert set(dead) == stream.malformed_keys
    if not duplicates_allowed:
        assert max(ids.values()) == 1, f"duplicates: {[i for i, c in ids.items() if c > 1][:5]}"
        assert max(dead.values()) == 1
    verdict_ids = Counter(v.verdict_id for v in out.verdicts)
    by_post = {v.post_id: v.verdict_id for v in out.verdicts}
    assert len(verdict_ids) == len(by_post), "a post's duplicate verdicts must share one verdict_id"


async def read_verdicts(settings: Settings, count: int, *, worker: asyncio.Task[object], timeout_s: float
                        ) -> dict[str, Verdict]:
    """Verdicts from the start of the ``verdicts`` topic, de-duplicated by ``verdict_id``, until ``count`` of
    them arrived; fails at once if ``worker`` stops first."""
    verdicts: dict[str, Verdict] = {}
    decoded = 0

    def enough(messages: list[Message]) -> bool:
        nonlocal decoded
        assert not worker.done(), worker
        for m in messages[decoded:]:
            verdict = codec.decode(m.value or b"", Verdict)
            verdicts.setdefault(verdict.verdict_id, verdict)
        decoded = len(messages)
        return len(verdicts) >= count

    async with TopicReader.open(settings, [settings.topics.all()["verdicts"]]) as reader:
        await reader.read_until(enough, timeout_s=timeout_s)
    return verdicts
