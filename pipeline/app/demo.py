"""The out-of-the-box demo: a small model built on first run, and a stream of posts to push through it.

``make run`` starts from a fresh clone with no model. :func:`ensure_demo_model` trains one from the
bundled seed corpus with :data:`DEMO_TRAIN`, a recipe tuned to finish in about two minutes on two CPU
cores (a stratified share of the corpus, short sequences, a high learning rate); ``modcascade train``
with the defaults on the whole corpus gives a better model in about ten. :func:`demo_stream` makes the
posts for the live demo: fresh texts from the seed generator, spam waves that exercise the score cache,
and a malformed record now and then for the dead-letter topic.

Training imports torch; it runs in a spawned child process, so this process never does (see :func:`_build_in_child`).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from rich.console import Console

from pipeline import codec
from pipeline.data.seed import CORPUS_PATH, DEFAULT_COUNTS, DEFAULT_SEED, generate, read_jsonl
from pipeline.errors import ConfigError
from pipeline.training.config import TrainConfig
from pipeline.training.data import Example, check_labels, load_examples, shuffled_by_label

__all__ = ["DEMO_SHARE", "DEMO_TRAIN", "demo_examples", "demo_stream", "ensure_demo_model", "has_model"]

DEMO_SHARE = 0.25
"""Share of each label of the seed corpus that the demo model sees (train + validation)."""

DEMO_TRAIN = TrainConfig(
    epochs=5,
    max_length=64,  # the seed posts are short: 99% fit in 75 tokens, the median is 21
    batch_size=16,
    learning_rate=2e-4,  # 4x the default: few rows and steps, so each step must count
)
"""The fast recipe, used on :data:`DEMO_SHARE` of the corpus (800 train / 200 validation rows). Measured on
2 CPU cores: built in about 106 s, validation macro-F1 0.937 (TF-IDF baseline 0.862; 0.918 on the 3,000
corpus rows it never saw). Threads are left to torch (one per physical core)."""

_DATA_SEED = 0  # which rows of each label the demo takes
_BUILDING = ".building-"  # infix of the temporary folder a model is trained in


def has_model(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a model: a ``config.json`` (a model of the user's own needs no card: its
    version is then derived from the config, see :class:`pipeline.backends.ModelInfo`). A build of ours is
    renamed into place only once complete, so a half-built demo model never has one."""
    return (model_dir / "config.json").is_file()


def demo_examples(examples: Sequence[Example], share: float = DEMO_SHARE, seed: int = _DATA_SEED) -> list[Example]:
    """A stratified, seeded subset: ``round(n * share)`` rows of each label (at least 2), in file order."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share {share} is outside (0, 1]")
    chosen: list[Example] = []
    for group in shuffled_by_label(examples, random.Random(seed)):
        chosen += group[: max(2, round(len(group) * share))]
    return sorted(chosen, key=lambda e: (e.line, e.text))


def ensure_demo_model(model_dir: Path, console: Console, *, policy_path: Path) -> bool:
    """Train the demo model into ``model_dir`` unless it already holds one; return whether it trained.

    The labels are checked against the policy's taxonomy first (as ``modcascade train --policy`` does).
    Training happens in a temporary folder next to ``model_dir``, renamed into place only once the model
    and its card are written, so an interrupted build leaves no half model behind.
    """
    if has_model(model_dir):
        return False
    if model_dir.exists() and (not model_dir.is_dir() or any(model_dir.iterdir())):
        raise ConfigError(f"{model_dir}: exists but holds no model (no config.json): remove it to "
                          "have the demo model built there, or point MODCASCADE_MODEL_DIR at a model")
    from pipeline.policy import load_policy

    taxonomy = load_policy(policy_path).taxonomy
    examples = demo_examples(load_examples(CORPUS_PATH))
    counts = check_labels(examples, min_per_label=DEMO_TRAIN.min_per_label, taxonomy=taxonomy,
                          source=str(CORPUS_PATH))
    missing = sorted({taxonomy.safe, *taxonomy.categories} - set(counts))
    if missing:
        raise ConfigError(f"{policy_path}: taxonomy: {missing} have no rows in the demo corpus {CORPUS_PATH}: "
                          "train a model on your own data (modcascade train) for this policy")

    console.print(f"no model in {model_dir}: training the demo model on {len(examples):,} seed posts "
                  f"({DEMO_TRAIN.epochs} epochs, about 2 minutes on 2 CPU cores)")
    started = time.perf_counter()
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}{_BUILDING}", dir=model_dir.parent))
    try:
        built = _build_in_child(examples, sorted(counts), building)
        if model_dir.exists():
            model_dir.rmdir()  # empty (checked above)
        building.rename(model_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)  # gone already after a successful rename
    console.print(f"demo model {built.version} ready in {model_dir}: validation macro-F1 {built.macro_f1:.3f} "
                  f"on {built.val_size:,} held-out posts (baseline {built.baseline_f1:.3f}), built in "
                  f"{time.perf_counter() - started:,.0f} s")
    return True


@dataclass(frozen=True, slots=True)
class _Built:
    version: str
    macro_f1: float
    val_size: int
    baseline_f1: float


def _build_in_child(examples: Sequence[Example], labels: list[str], building: Path) -> _Built:
    """Train in a spawned child process. Training imports torch (and through it triton), whose native extensions
    report "leaked" objects when an interpreter that imported them shuts down: a screen of noise at the end of the
    first ``make run``. The child leaves with ``os._exit`` once its model and card are written, so neither it nor
    this process (which never imports torch) prints any of it."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_build_and_exit, args=(list(examples), labels, building, send),
                            name="demo-model-training")
    child.start()
    send.close()
    try:
        outcome = receive.recv()
    except EOFError:
        outcome = None
    child.join()
    if isinstance(outcome, _Built):
        return outcome
    detail = outcome if isinstance(outcome, str) else f"the training process exited with code {child.exitcode}"
    raise ConfigError(f"training the demo model failed: {detail}")


def _build_and_exit(examples: list[Example], labels: list[str], building: Path, send: Connection) -> None:
    code = 0
    try:
        send.send(_build(examples, labels, building))
    except BaseException as exc:  # reported to the parent, which raises it as one error line
        send.send(f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        send.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _build(examples: Sequence[Example], labels: list[str], building: Path) -> _Built:
    from pipeline.training.baseline import tfidf_baseline
    from pipeline.training.card import write_card
    from pipeline.training.data import split
    from pipeline.training.trainer import train  # imports torch

    train_rows, val_rows = split(examples, DEMO_TRAIN.val_fraction, DEMO_TRAIN.seed)  # the trainer's split
    baseline = tfidf_baseline(train_rows, val_rows, labels)
    result = train(DEMO_TRAIN, examples, building, progress=True)
    card = write_card(result, data_path=CORPUS_PATH, data_size=len(examples), baseline=baseline)
    return _Built(str(card["version"]), float(result.validation["macro_f1"]), result.val_size,
                  float(baseline["macro_f1"]))


# -- the demo stream ---------------------------------------------------------------------------------

_WAVE_MIN_POSTS = 20  # shorter streams get no spam wave
_MAX_WAVES = 5
_WHITESPACE_SHARE = 0.3  # of a wave's repeats, the share posted with extra whitespace


def demo_stream(n: int, *, seed: int = 11, malformed_every: int = 97) -> list[bytes]:
    """``n`` JSON records for the posts topic, the same for the same arguments.

    Ids are ``demo-00001``, ``demo-00002``, ... in stream order. Texts come from the seed generator with
    ``seed`` (the corpus uses 7), minus any text that is also in the training corpus. About a tenth of the
    posts belong to a few spam waves: one spam text posted again and again under new ids, a few posts
    apart, sometimes with extra whitespace (the score cache treats those as the same post). Every
    ``malformed_every``-th record (0: none) is broken, in turn: not JSON, no ``text``, not UTF-8, empty
    ``text``. Records carry no ``created_at``: the producer stamps it when it publishes.
    """
    if n < 0:
        raise ValueError(f"n {n} must be non-negative")
    if malformed_every < 0:
        raise ValueError(f"malformed_every {malformed_every} must be non-negative (0: no malformed records)")
    if seed == DEFAULT_SEED:
        raise ValueError(f"seed {seed} is the training corpus's seed: pick another")
    rng = random.Random(seed)
    malformed = {i for i in range(n) if malformed_every and i % malformed_every == malformed_every - 1}
    n_good = n - len(malformed)
    n_waves = 0 if n_good < _WAVE_MIN_POSTS else min(_MAX_WAVES, max(1, n_good // 150))
    per_wave = max(3, n_good // (10 * n_waves)) if n_waves else 0

    fresh, wave_texts = _fresh_texts(n_good - n_waves * per_wave, n_waves, seed)
    texts = list(fresh)
    for text in wave_texts:  # each wave: the text, then repeats 1-4 posts apart from a random start
        at = rng.randrange(len(texts) + 1)
        for copy in range(per_wave):
            texts.insert(min(at, len(texts)), text if copy == 0 else _respace(text, rng))
            at += 1 + rng.randint(1, 4)

    records: list[bytes] = []
    good = iter(texts)
    for i in range(n):
        post_id = f"demo-{i + 1:05d}"
        if i in malformed:
            records.append(_malformed(post_id, (i // malformed_every) % 4))
        else:
            records.append(codec.dumps({"id": post_id, "text": next(good), "source": "demo"}))
    return records


def _fresh_texts(n_unique: int, n_waves: int, seed: int) -> tuple[list[str], list[str]]:
    """``n_unique`` distinct generated texts (all labels, corpus proportions) and ``n_waves`` distinct spam
    texts, none of them in the training corpus."""
    corpus = {row["text"] for row in read_jsonl(CORPUS_PATH)}
    total = sum(DEFAULT_COUNTS.values())
    need = n_unique + n_waves
    counts = {label: (need * count * 115) // (100 * total) + 3 for label, count in DEFAULT_COUNTS.items()}
    counts["spam"] += n_waves
    rows = [row for row in generate(counts, seed=seed) if row["text"] not in corpus]
    spam = [row["text"] for row in rows if row["label"] == "spam"][:n_waves]
    unique = [row["text"] for row in rows if row["text"] not in spam][:n_unique]
    if len(unique) < n_unique or len(spam) < n_waves:  # not expected: the margin covers corpus overlaps
        raise ValueError(f"the seed generator gave too few fresh texts for {need} posts")
    return unique, spam


def _respace(text: str, rng: random.Random) -> str:
    """``text`` as a repeat: mostly verbatim, sometimes with extra spaces or a trailing newline."""
    if rng.random() >= _WHITESPACE_SHARE:
        return text
    return rng.choice((text + "  ", "  " + text, text.replace(" ", "  ", 1), text + "\n", text.replace(" ", " \t ", 1)))


def _malformed(post_id: str, kind: int) -> bytes:
    """A broken record of one of four kinds, each a different dead-letter reason."""
    if kind == 0:  # cut off mid-string: invalid_json
        return b'{"id": "' + post_id.encode() + b'", "text": "hey has anyone seen the new '
    if kind == 1:  # no text: invalid_record
        return codec.dumps({"id": post_id, "source": "demo"})
    if kind == 2:  # Latin-1 bytes in a UTF-8 topic: invalid_utf8
        return b'{"id": "' + post_id.encode() + b'", "text": "caf\xe9 au lait \xe0 la gare", "source": "demo"}'
    return codec.dumps({"id": post_id, "text": "", "source": "demo"})  # empty_text
