# syntax=docker/dockerfile:1
# The human review console: `modcascade review` (the web app on port 8080, docs/review-console.md) and
# `modcascade review migrate`. The worker image's code and dependencies plus the `review` extra: Starlette, uvicorn,
# Jinja2, SQLAlchemy with Alembic, and psycopg for PostgreSQL. No inference engine.
#
# Built on its own (not FROM the worker image), so `docker compose up --build` needs no build order:
#   docker build -f deploy/docker/review.Dockerfile -t modcascade/review:0.1.0 .
# Runs as uid 10001. No HEALTHCHECK: compose and Kubernetes probe GET /healthz themselves.
# Dependencies are pinned by deploy/docker/requirements-review.txt: the worker lock plus the review extra, compiled
# with the worker lock as constraints so both images run the same versions (regenerate it after
# requirements-worker.txt, with the command in its header; tests/unit/test_deploy_files.py fails when they disagree).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY deploy/docker/requirements-review.txt ./
RUN python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps -r requirements-review.txt
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps /wheels/modcascade-*.whl \
 && python -m pip --python /opt/venv/bin/python check

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 modcascade \
 && useradd --system --uid 10001 --gid modcascade --home-dir /app --no-create-home --shell /usr/sbin/nologin \
      modcascade \
 && mkdir -p /app /data/review \
 && chown modcascade:modcascade /data /data/review
COPY --from=build /opt/venv /opt/venv
# Default policies (the console shows the policy's taxonomy); compose and Kubernetes mount the live ones over them.
COPY policies /app/policies
# Listens on every interface of the container. The SQLite default (on /data/review: mount a volume there) is for a
# single `docker run`; compose and Kubernetes set MODCASCADE_REVIEW_DATABASE_URL to PostgreSQL from a secret.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODCASCADE_POLICY_PATH=/app/policies/default.yaml \
    MODCASCADE_REVIEW_HOST=0.0.0.0 \
    MODCASCADE_REVIEW_PORT=8080 \
    MODCASCADE_REVIEW_DATABASE_URL=sqlite:////data/review/review.db
WORKDIR /app
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["modcascade"]
CMD ["review"]
