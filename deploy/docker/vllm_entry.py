#!/usr/bin/env python3
"""Entry point and health probe of the modcascade model-server images (vLLM, pooling runner).

    vllm_entry.py serve [VLLM ARGS...]               exec vLLM's OpenAI-compatible server on $MODCASCADE_MODEL_DIR
    vllm_entry.py probe [--url URL] [--timeout S]    one real POST /classify; exit 0 only for a well-formed answer

Standard library only: it runs inside the vLLM images (CUDA and CPU), which do not have modcascade installed.

``serve`` starts the same server as ``modcascade serve-model`` (pipeline/serving.py): the model directory, served
under the name the classify workers look for in ``/v1/models`` (the model card's ``name``, else the directory's
name with symlinks resolved: the rule of pipeline.backends.base.ModelInfo), ``--runner pooling`` for a
``*ForSequenceClassification`` model. Arguments after ``serve`` are passed to vLLM after the defaults, so they
win (argparse keeps the last value): ``serve --max-model-len 512 --dtype bfloat16``.

``probe`` is the readiness check: ``/health`` only says the API process is up, so the probe classifies one text
and checks the answer (one result, one probability per label of the model's ``config.json``, summing to 1). A
hung or broken engine makes it time out or fail. Exit codes: 0 ready, 1 not ready (the reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_MODEL_DIR = "/models/current"
MODEL_DIR_ENV = "MODCASCADE_MODEL_DIR"  # the same setting the classify workers read
DEFAULT_PORT = 8000
PROBE_TEXT = "modcascade readiness probe: is this engine classifying?"


def model_dir() -> Path:
    return Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)


def served_name(directory: Path) -> str:
    """The model card's ``name``, else the directory's name with symlinks resolved (ModelInfo's rule)."""
    card = directory / "model_card.json"
    if card.is_file():
        name = json.loads(card.read_text("utf-8")).get("name")
        if isinstance(name, str) and name:
            return name
    return directory.resolve().name


def label_count(directory: Path) -> int:
    config = json.loads((directory / "config.json").read_text("utf-8"))
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ValueError(f"{directory / 'config.json'} has no id2label: not a sequence-classification model")
    return len(id2label)


def server_command(directory: Path, extra: list[str]) -> list[str]:
    """vLLM's API server on ``directory``; ``extra`` comes last so that it overrides the defaults."""
    return [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(directory),
        "--served-model-name", served_name(directory),
        "--runner", "pooling",
        "--host", "0.0.0.0",
        "--port", str(DEFAULT_PORT),
        "--max-model-len", "256",
        "--disable-log-stats",
        *extra,
    ]


def serve(extra: list[str]) -> int:
    directory = model_dir()
    if not (directory / "config.json").is_file():
        print(f"vllm_entry: no model at {directory} (config.json missing): mount the model directory there or set "
              f"{MODEL_DIR_ENV}", file=sys.stderr)
        return 2
    command = server_command(directory, extra)
    print("vllm_entry: " + " ".join(command), file=sys.stderr, flush=True)
    os.execv(sys.executable, command)  # replaces this process: signals go straight to vLLM


def check_answer(body: Any, labels: int) -> str | None:
    """None if ``body`` is a well-formed /classify answer for one text, else what is wrong with it."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != 1:
        return f"expected one result in 'data', got {body!r:.200}"
    probs = data[0].get("probs") if isinstance(data[0], dict) else None
    if not isinstance(probs, list) or len(probs) != labels:
        return f"expected {labels} probabilities, got {probs!r:.200}"
    if not all(isinstance(p, int | float) and math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs):
        return f"probabilities out of range: {probs!r:.200}"
    if abs(sum(probs) - 1.0) > 1e-3:
        return f"probabilities sum to {sum(probs):.6f}, not 1"
    return None


def probe(url: str, timeout_s: float) -> int:
    directory = model_dir()
    try:
        payload = {"model": served_name(directory), "input": [PROBE_TEXT]}
        labels = label_count(directory)
        request = urllib.request.Request(url.rstrip("/") + "/classify", data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, bad JSON, unreadable model files
        print(f"vllm_entry probe: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    problem = check_answer(body, labels)
    if problem:
        print(f"vllm_entry probe: {problem}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"]:
        return serve(args[1:])
    parser = argparse.ArgumentParser(prog="vllm_entry.py", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="exec vLLM's server (further arguments go to vLLM)")
    p = sub.add_parser("probe", help="classify one text against the local server")
    p.add_argument("--url", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds for the whole call")
    options = parser.parse_args(args)
    return probe(options.url, options.timeout)


if __name__ == "__main__":
    sys.exit(main())
