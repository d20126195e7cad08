"""What the tests share: one importable home for fakes, sample records, scripted servers and broker helpers.

    fakes       FakeClock (a hand-advanced monotonic clock); the fake classifier is the library's
                (:class:`pipeline.backends.fake.FakeClassifier`)
    samples     a realistic instance of every record type
    evaluation  synthetic scored data for the evaluation tests
    frontier    scripted Anthropic (Messages, Message Batches) and OpenAI (Chat Completions) servers
    kafka       the broker fixtures' factory types, unique names, bounded reads
    cascade     a namespaced set of cascade topics, a stream of posts, the accounting of its outputs by post id
    processes   process hygiene (no child outlives its shutdown) and ``modcascade worker`` processes
    workers     classify worker processes on the session's model server: environment, log lines, offsets
    models      the session's model engines (the fixtures live in ``tests/integration/conftest.py``)
    faust_app   a tiny faust app, run as a process by the environment test

Importing this package imports nothing heavy; import the module you need.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository root."""
