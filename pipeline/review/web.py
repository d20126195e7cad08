"""The console's web app (Starlette, server-rendered Jinja2 pages with autoescaping on; no page needs JavaScript,
the keyboard shortcuts in ``static/console.js`` only fill and submit the same forms).

Access: every page but the login needs a signed-in reviewer (a configured name and scrypt hash); the session is a
cookie signed with the configured secret (SameSite=Strict, HttpOnly; Secure when configured). Every form carries
the session's CSRF token (synchronizer token) and is rejected without it. Responses forbid inline scripts and
framing (Content-Security-Policy), so even a rendering mistake could not run a post's markup.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.policy import Policy
from pipeline.records import utcnow
from pipeline.review import auth
from pipeline.review.decision import DECISION_KEYS, DECISIONS, ChoiceError, parse_choice
from pipeline.review.rules import QUEUE_TITLES, QUEUES, Queue
from pipeline.review.stats import compute
from pipeline.review.store import ReviewConflict, ReviewStore

HERE = Path(__file__).parent
SESSION_MAX_AGE_S = 12 * 3600
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
     b"frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["utc"] = lambda t: "" if t is None else f"{t:%Y-%m-%d %H:%M:%S} UTC"
    env.filters["pct"] = lambda x: f"{x:.1%}"
    return Jinja2Templates(env=env)


def create_app(
    store: ReviewStore,
    policy: Policy,
    users: dict[str, str],
    *,
    secret: str,
    secure_cookie: bool = False,
    on_decided: Callable[[], None] = lambda: None,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    """The console. ``on_decided`` is called (from a worker thread) after each committed decision: the outbox
    drainer's wake-up."""
    templates = _templates()
    safe = policy.taxonomy.safe
    categories = policy.taxonomy.categories
    choices = [(str((i + 1) % 10) if i < 10 else "", name) for i, name in enumerate((safe, *categories))]

    def user_of(request: Request) -> str | None:
        name = request.session.get("user")
        return name if isinstance(name, str) and name in users else None

    def token(request: Request) -> str:
        value = request.session.get("csrf")
        if not isinstance(value, str):
            value = auth.new_token()
            request.session["csrf"] = value
        return value

    def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        flash = request.session.pop("flash", None)
        return templates.TemplateResponse(request, name, {
            "user": user_of(request), "csrf": token(request), "flash": flash, "queue_titles": QUEUE_TITLES,
            **context,
        }, status_code=status)

    async def checked_form(request: Request) -> FormData | None:
        form = await request.form()
        submitted = form.get("csrf")
        if not auth.tokens_match(request.session.get("csrf"), submitted if isinstance(submitted, str) else None):
            return None
        return form

    def forbidden() -> Response:
        return PlainTextResponse("the form's CSRF token is missing or stale: reload the page and try again",
                                 status_code=403)

    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    def flash(request: Request, message: str) -> None:
        request.session["flash"] = message

    async def login_page(request: Request) -> Response:
        if user_of(request):
            return RedirectResponse("/", status_code=303)
        return render(request, "login.html", error=None)

    async def login(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return forbidden()
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        if not await run_in_threadpool(auth.check_login, users, name, password):
            return render(request, "login.html", status=401, error="unknown reviewer or wrong password")
        request.session.clear()  # a fresh session (and CSRF token) on every sign-in
        request.session["user"] = name
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        if await checked_form(request) is None:
            return forbidden()
        request.session.clear()
        return to_login()

    def queue_param(value: str | None) -> Queue | None:
        return next((q for q in QUEUES if q == value), None)

    async def queue_page(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return to_login()
        now = clock()
        queue = queue_param(request.query_params.get("queue"))
        counts = await run_in_threadpool(store.queue_counts, now)
        listed = await run_in_threadpool(lambda: store.open_items(user, now, queue=queue))
        return render(request, "queue.html", counts=counts, items=listed, queue=queue, now=now)

    async def claim_next(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return to_login()
        form = await checked_form(request)
        if form is None:
            return forbidden()
        queue = queue_param(str(form.get("queue", "")))
        item_id = await run_in_threadpool(lambda: store.claim_next(user, clock(), queue=queue))
        if item_id is None:
            flash(request, "nothing to review in " + (QUEUE_TITLES[queue] if queue else "any queue"))
            return RedirectResponse("/" + (f"?queue={queue}" if queue else ""), status_code=303)
        return RedirectResponse(f"/items/{item_id}", status_code=303)

    async def item_page(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return to_login()
        view = await run_in_threadpool(store.item, int(request.path_params["item_id"]))
        if view is None:
            return render(request, "missing.html", status=404)
        now = clock()
        decided_by_me = any(d.reviewer == user for d in view.decisions)
        scores = sorted((view.verdict.scores if view.verdict else {}).items(), key=lambda kv: -kv[1])
        return render(request, "item.html", view=view, now=now, holder=view.claim.holder(now),
                      mine=view.claim.reviewer == user and view.state == "open" and not decided_by_me,
                      may_claim=view.state == "open" and not decided_by_me and view.claim.may_take(user, now),
                      decided_by_me=decided_by_me, scores=scores, choices=choices, decisions=DECISIONS,
                      decision_keys=DECISION_KEYS, error=None)

    async def claim(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return to_login()
        if await checked_form(request) is None:
            return forbidden()
        item_id = int(request.path_params["item_id"])
        try:
            await run_in_threadpool(store.claim, item_id, user, clock())
        except ReviewConflict as exc:
            flash(request, str(exc))
        return RedirectResponse(f"/items/{item_id}", status_code=303)

    async def release(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return to_login()
        if await checked_form(request) is None:
            return forbidden()
        await run_in_threadpool(store.release, int(request.path_params["item_id"]), user)
        return RedirectResponse("/", status_code=303)

    async def decide(request: Request) -> Response:
        user = user_of(request)
        if user is None:
            return to_login()
        form = await checked_form(request)
        if form is None:
            return forbidden()
        item_id = int(request.path_params["item_id"])
        decision, label = form.get("decision"), form.get("label")
        try:
            choice = parse_choice(decision if isinstance(decision, str) else None,
                                  label if isinstance(label, str) else None, safe=safe, categories=categories)
            decided = await run_in_threadpool(store.decide, item_id, user, choice, clock())
        except (ChoiceError, ReviewConflict) as exc:
            flash(request, str(exc))
            return RedirectResponse(f"/items/{item_id}", status_code=303)
        on_decided()
        outcome = "the verdict changes" if decided.verdict is not None else "the verdict stands"
        if not decided.published:
            outcome = "recorded as the second review"
        flash(request, f"item {item_id} decided: {choice.decision}, {choice.label} ({outcome})")
        view = await run_in_threadpool(store.item, item_id)
        queue = view.queue if view else None
        next_id = await run_in_threadpool(lambda: store.claim_next(user, clock(), queue=queue))
        return RedirectResponse(f"/items/{next_id}" if next_id else "/", status_code=303)

    async def stats_page(request: Request) -> Response:
        if user_of(request) is None:
            return to_login()
        rows = await run_in_threadpool(store.decision_rows)
        return render(request, "stats.html", stats=compute(rows, clock()))

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", queue_page, methods=["GET"]),
        Route("/claim-next", claim_next, methods=["POST"]),
        Route("/items/{item_id:int}", item_page, methods=["GET"]),
        Route("/items/{item_id:int}/claim", claim, methods=["POST"]),
        Route("/items/{item_id:int}/release", release, methods=["POST"]),
        Route("/items/{item_id:int}/decide", decide, methods=["POST"]),
        Route("/stats", stats_page, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=secret, session_cookie="modcascade_review",
                   max_age=SESSION_MAX_AGE_S, same_site="strict", https_only=secure_cookie),
    ]
    return Starlette(routes=routes, middleware=middleware)
