# syntax=docker/dockerfile:1
# The drift monitor: `modcascade worker monitor`, a faust-streaming app. The worker image plus faust-streaming (the
# `monitor` extra), pinned by deploy/docker/requirements-monitor.txt; the stream workers' image stays without it.
#
# Build the worker image first, then from the repository root:
#   docker build -f deploy/docker/monitor.Dockerfile -t modcascade/monitor:0.1.0 .
# Runs as uid 10001. The window tables live in memory and are rebuilt from their changelog topics at start; faust's
# working folder is MODCASCADE_MONITOR_DATA_DIR (/data/monitor, writable).

ARG WORKER_IMAGE=modcascade/worker:0.1.0

FROM ${WORKER_IMAGE}
USER 0:0
COPY deploy/docker/requirements-monitor.txt /tmp/requirements-monitor.txt
# /opt/venv (first on PATH) has no pip of its own: the base image's pip installs into it.
RUN /usr/local/bin/python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps -r /tmp/requirements-monitor.txt \
 && /usr/local/bin/python -m pip --python /opt/venv/bin/python check \
 && rm /tmp/requirements-monitor.txt \
 && mkdir -p /data/monitor \
 && chown 10001:10001 /data/monitor
ENV MODCASCADE_MONITOR_DATA_DIR=/data/monitor
USER 10001:10001
ENTRYPOINT ["modcascade"]
CMD ["worker", "monitor"]
