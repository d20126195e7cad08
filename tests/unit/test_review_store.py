"""The review console's database: migrations, idempotent ingestion, claims, decisions, outbox, restart; each on
SQLite (the embedded default, unit tier) and on PostgreSQL (a throwaway cluster, or MODCASCADE_TEST_POSTGRES_URL;
tools tier: tests/support/postgres.py). And its web app through Starlette's test client: sign-in, CSRF, escaping,
claim conflicts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select
from starlette.testclient import TestClient

from pipeline import codec
from pipeline.policy import Policy, load_policy
from pipeline.records import Label, Verdict
from pipeline.review import auth
from pipeline.review.db import current_revision, decisions, make_engine, metadata, upgrade
from pipeline.review.decision import parse_choice
from pipeline.review.store import ReviewConflict, ReviewStore
from pipeline.review.web import create_app
from tests.support import REPO, postgres
from tests.support.review import SECRET, T0, audit_label, post, review_settings, verdict

SAFE, CATEGORIES = "safe", ("harassment", "spam")


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for this module's tests (see tests/support/postgres.py), or a skip saying why not."""
    if (configured := postgres.configured_url()) is not None:
        yield configured
        return
    try:
        with postgres.throwaway_cluster() as server:
            yield server
    except postgres.Unavailable as exc:
        pytest.skip(f"no PostgreSQL here: {exc}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.tools)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database the store runs on: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'review.db'}"
        return
    with postgres.fresh_database(request.getfixturevalue("postgres_server")) as database:
        yield database


@pytest.fixture
def store(url: str) -> Iterator[ReviewStore]:
    s = ReviewStore.open(review_settings(url, qa_sample_rate=1.0, claim_ttl_s=600), safe=SAFE)
    yield s
    s.close()


def choice(decision: str, label: str) -> object:
    return parse_choice(decision, label, safe=SAFE, categories=CATEGORIES)


def test_migrations_build_the_schema_from_empty_and_match_the_models(url: str) -> None:
    engine = make_engine(url)
    assert current_revision(engine) is None
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert current_revision(engine) == "0001"
    assert set(inspect(engine).get_table_names()) >= {"posts", "items", "decisions", "outbox", "alembic_version"}
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), metadata)
    assert diff == [], f"the migrations and pipeline/review/db.py differ: {diff}"
    engine.dispose()


def test_ingestion_is_idempotent_and_waits_for_the_post_text(store: ReviewStore) -> None:
    v = verdict("p1", decision="review", category="harassment")
    assert store.ingest([], [v], [], T0) == 1
    assert store.ingest([], [v], [], T0) == 0  # re-delivered: no second item
    (review,) = [c for c in store.queue_counts(T0) if c.queue == "review"]
    assert (review.available, review.waiting) == (0, 1)
    assert store.open_items("alice", T0) == []
    store.ingest([post("p1", "hello")], [], [], T0)
    (review,) = [c for c in store.queue_counts(T0) if c.queue == "review"]
    assert (review.available, review.waiting) == (1, 0)
    assert [i.post_id for i in store.open_items("alice", T0)] == ["p1"]


def test_queues_fill_from_verdicts_and_audit_labels(store: ReviewStore) -> None:
    slm = verdict("a1", decision="block", category="spam")
    store.ingest([post("r1"), post("f1"), post("q1"), post("n1")], [
        verdict("r1", decision="review", category="harassment"),
        verdict("f1", decision="block", category="spam", route="fallback"),
        verdict("q1", decision="allow", route="frontier", rationale="fine"),
        verdict("n1", decision="allow"),
    ], [audit_label("a1", "safe", audited=slm.verdict_id)], T0)
    counts = {c.queue: (c.available, c.waiting) for c in store.queue_counts(T0)}
    assert counts == {"review": (1, 0), "fallback": (1, 0), "qa": (1, 0), "audit": (0, 1)}  # audit: no verdict yet
    store.ingest([], [slm], [], T0)
    assert [i.queue for i in store.open_items("alice", T0)] == ["review", "audit", "fallback", "qa"]
    audit = next(i for i in store.open_items("alice", T0) if i.queue == "audit")
    view = store.item(audit.id)
    assert view is not None and view.text == "audited post" and view.verdict == slm
    assert view.audit_label is not None and view.audit_label.rationale == "the judge's reason"


def test_two_reviewers_never_hold_the_same_item_and_an_expired_claim_is_taken_over(store: ReviewStore) -> None:
    store.ingest([post("p")], [verdict("p", decision="review", category="spam")], [], T0)
    (item,) = store.open_items("alice", T0)
    store.claim(item.id, "alice", T0)
    with pytest.raises(ReviewConflict, match="claimed by alice"):
        store.claim(item.id, "bob", T0 + timedelta(minutes=5))
    assert store.claim_next("bob", T0 + timedelta(minutes=5)) is None
    with pytest.raises(ReviewConflict, match="claimed by alice"):
        store.decide(item.id, "bob", choice("block", "spam"), T0)
    expired = T0 + timedelta(seconds=600)
    assert store.claim_next("bob", expired) == item.id
    with pytest.raises(ReviewConflict, match="claimed by bob"):
        store.decide(item.id, "alice", choice("allow", "safe"), expired)
    store.decide(item.id, "bob", choice("block", "spam"), expired)
    with pytest.raises(ReviewConflict, match="decided"):
        store.claim(item.id, "alice", expired)


def test_a_decision_is_final_auditable_and_published_through_the_outbox(store: ReviewStore) -> None:
    original = verdict("p", decision="review", category="harassment")
    store.ingest([post("p", "text of p")], [original], [], T0)
    (item,) = store.open_items("alice", T0)
    store.claim(item.id, "alice", T0)
    done = store.decide(item.id, "alice", choice("block", "harassment"), T0 + timedelta(seconds=30))
    assert done.published and done.verdict is not None and done.verdict.supersedes == original.verdict_id
    pending = store.pending()
    assert [r.role for r in pending] == ["labels", "verdicts"]
    label = codec.decode(pending[0].value, Label)
    assert (label.source, label.label, label.text, label.verdict_id) == ("human", "harassment", "text of p",
                                                                         original.verdict_id)
    assert codec.decode(pending[1].value, Verdict) == done.verdict
    with store.engine.connect() as c:
        (d,) = c.execute(select(decisions)).all()
    assert (d.reviewer, d.decision, d.label, d.previous_decision, d.previous_category, d.outcome_changed) == (
        "alice", "block", "harassment", "review", "harassment", True)
    assert d.decided_at == T0 + timedelta(seconds=30) and d.new_verdict_id == done.verdict.verdict_id
    store.mark_sent([r.id for r in pending], T0)
    assert store.pending() == []
    # The human verdict comes back on the verdicts topic: it queues nothing and stays the current verdict.
    assert store.ingest([], [done.verdict, original], [], T0) == 0
    view = store.item(item.id)
    assert view is not None and view.verdict == done.verdict and view.state == "done"
    assert [(e.reviewer, e.outcome_changed) for e in view.decisions] == [("alice", True)]


def test_confirming_publishes_a_label_only_and_qa_items_get_a_blind_second_review(store: ReviewStore) -> None:
    store.ingest([post("q")], [verdict("q", decision="block", category="spam", route="frontier")], [], T0)
    (item,) = store.open_items("alice", T0)
    store.claim(item.id, "alice", T0)
    first = store.decide(item.id, "alice", choice("block", "spam"), T0)
    assert first.published and first.verdict is None
    assert [r.role for r in store.pending()] == ["labels"]
    assert store.open_items("alice", T0) == []  # alice has reviewed it: the second review is someone else's
    with pytest.raises(ReviewConflict, match="decided item"):
        store.claim(item.id, "alice", T0)
    assert store.claim_next("bob", T0) == item.id
    second = store.decide(item.id, "bob", choice("allow", "safe"), T0 + timedelta(minutes=1))
    assert not second.published and second.verdict is None and second.label is None
    assert [r.role for r in store.pending()] == ["labels"]  # the second review publishes nothing
    rows = store.decision_rows()
    assert sorted((r.reviewer, r.label, r.frontier_label) for r in rows) == [("alice", "spam", "spam"),
                                                                            ("bob", "safe", "spam")]


def test_a_restart_loses_no_claim_and_no_decision(url: str) -> None:
    settings = review_settings(url, claim_ttl_s=600)
    first = ReviewStore.open(settings, safe=SAFE)
    first.ingest([post("a"), post("b")], [verdict("a", decision="review", category="spam"),
                                          verdict("b", decision="review", category="spam")], [], T0)
    a, b = first.open_items("alice", T0)
    first.claim(a.id, "alice", T0)
    first.decide(a.id, "alice", choice("allow", "safe"), T0)
    first.claim(b.id, "alice", T0)
    first.close()
    again = ReviewStore.open(settings, safe=SAFE)
    assert again.item(a.id).state == "done"  # type: ignore[union-attr]
    assert again.item(b.id).claim.holder(T0) == "alice"  # type: ignore[union-attr]
    with pytest.raises(ReviewConflict, match="claimed by alice"):
        again.claim(b.id, "bob", T0)
    assert [r.role for r in again.pending()] == ["labels", "verdicts"]
    again.close()


def test_old_posts_outside_any_queue_are_pruned(store: ReviewStore) -> None:
    store.ingest([post("keep"), post("drop")], [verdict("keep", decision="review", category="spam")], [], T0)
    assert store.prune(T0 + timedelta(hours=25)) == 1
    assert store.item(store.open_items("alice", T0 + timedelta(hours=25))[0].id).text == "some post"  # type: ignore[union-attr]


# -- the web app --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(REPO / "policies" / "default.yaml")


@pytest.fixture
def client(tmp_path: Path, policy: Policy) -> Iterator[TestClient]:
    s = ReviewStore.open(review_settings(f"sqlite:///{tmp_path / 'web.db'}"), safe=policy.taxonomy.safe)
    s.ingest([post("x", '<script>alert("pwned")</script><img src=x onerror=alert(1)> & <b>bold</b>')],
             [verdict("x", decision="review", category="harassment")], [], T0)
    users = {"alice": auth.hash_password("pw-a", log2_n=10), "bob": auth.hash_password("pw-b", log2_n=10)}
    with TestClient(create_app(s, policy, users, secret=SECRET)) as c:
        yield c
    s.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"username": name, "password": password, "csrf": token},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def test_pages_need_a_signed_in_reviewer(client: TestClient) -> None:
    for path in ["/", "/items/1", "/stats"]:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"
    token = csrf_of(client.get("/login").text)
    bad = client.post("/login", data={"username": "alice", "password": "nope", "csrf": token})
    assert bad.status_code == 401 and "wrong password" in bad.text
    assert client.get("/healthz").text == "ok"


def test_forms_without_the_session_csrf_token_are_refused(client: TestClient) -> None:
    client.get("/login")
    assert client.post("/login", data={"username": "alice", "password": "pw-a"}).status_code == 403
    assert client.post("/login", data={"username": "alice", "password": "pw-a", "csrf": "forged"}).status_code == 403
    sign_in(client, "alice", "pw-a")
    assert client.post("/items/1/claim", data={"csrf": "forged"}).status_code == 403
    assert client.post("/items/1/decide", data={"decision": "block", "label": "harassment"}).status_code == 403


def test_post_text_is_rendered_as_inert_text_with_a_strict_policy(client: TestClient) -> None:
    sign_in(client, "alice", "pw-a")
    page = client.get("/items/1")
    assert "<script>alert" not in page.text and "<img src=x" not in page.text and "<b>bold</b>" not in page.text
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    cookie = page.headers.get("set-cookie", "") or client.cookies.get("modcascade_review", "")
    assert cookie


def test_a_second_reviewer_cannot_take_a_claimed_item_over_the_web(client: TestClient, tmp_path: Path,
                                                                  policy: Policy) -> None:
    sign_in(client, "alice", "pw-a")
    token = csrf_of(client.get("/").text)
    assert client.post("/claim-next", data={"csrf": token, "queue": "review"},
                       follow_redirects=False).headers["location"] == "/items/1"
    page = client.get("/items/1").text
    assert 'id="decide-form"' in page
    client.post("/logout", data={"csrf": csrf_of(page)})
    sign_in(client, "bob", "pw-b")
    token = csrf_of(client.get("/").text)
    assert client.post("/items/1/claim", data={"csrf": token}).status_code == 200
    page = client.get("/items/1").text
    assert "Claimed by alice" in page and 'id="decide-form"' not in page
    refused = client.post("/items/1/decide", data={"csrf": token, "decision": "allow", "label": "safe"})
    assert "claimed by alice" in refused.text
