"""Deterministic generator of the project's synthetic, labelled seed corpus.

The seed corpus exists so that a demo classifier can be trained when a user has no labelled data of
their own. It is composed from templates and slot fillers written by hand for this project (they are in
``seed_templates.yaml`` beside this module); it is not a benchmark and says nothing about real-world
accuracy. Real use starts from the user's own labelled posts or from labels produced by the frontier model.

Content rules (kept on purpose, see ``pipeline/data/README.md``):

* hate posts target *invented* groups only (``Zorbians``, ``Flerks``, ...), never real protected groups,
  and contain no real slurs;
* sexual posts are mild solicitation, never graphic;
* self-harm posts express risk, never methods;
* violence posts are threats or incitement, never gore.

``safe`` includes *hard negatives*: innocent posts that borrow the vocabulary of a harmful class (game
trash talk, idioms, news reports, condemnation of hate, support resources, genuine shopping questions).

Regenerate the committed file with::

    python -m pipeline.data.seed pipeline/data/seed_corpus.jsonl
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from pipeline.errors import ConfigError

LABELS: tuple[str, ...] = ("safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm")
"""The taxonomy, in a fixed order (the order in which rows are generated before the final shuffle)."""

DEFAULT_COUNTS: dict[str, int] = {
    "safe": 1800,
    "spam": 600,
    "harassment": 400,
    "hate": 320,
    "violence": 320,
    "sexual": 280,
    "self_harm": 280,
}
"""About 4,000 rows, moderately imbalanced like real traffic."""

HARD_NEGATIVE_FRACTION = 0.34
"""Share of the ``safe`` rows that are hard negatives."""

DEFAULT_SEED = 7
CORPUS_PATH = Path(__file__).with_name("seed_corpus.jsonl")
TEMPLATES_PATH = Path(__file__).with_name("seed_templates.yaml")


# -- the words: seed_templates.yaml ---------------------------------------------------------------------------


class _Words(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GeneratedWords(_Words):
    """Word lists of the slots made by code (``{handle}``, ``{url}``, ``{safe_url}``)."""

    handle_bases: tuple[str, ...]
    spam_url_stems: tuple[str, ...]
    spam_url_tlds: tuple[str, ...]
    spam_url_hosts: tuple[str, ...]
    spam_url_domains: tuple[str, ...]
    safe_url_sites: tuple[str, ...]


class Framing(_Words):
    """Framing and style, shared by every label so that none of it is a label signal."""

    openers: tuple[str, ...]
    closers: tuple[str, ...]
    hashtags: tuple[str, ...]
    preambles: tuple[str, ...]
    emoji_by_label: dict[str, tuple[str, ...]]
    slang: tuple[tuple[str, str], ...]
    paraphrases: tuple[tuple[str, tuple[str, ...]], ...]


class SeedTemplates(_Words):
    """``seed_templates.yaml``: what the posts are composed of. The order of every list is part of the corpus."""

    fillers: dict[str, tuple[str, ...]]
    generated: GeneratedWords
    templates: dict[str, tuple[str, ...]]
    """Ordinary templates per label; ``safe`` hard negatives are in :attr:`hard_negatives`."""
    hard_negatives: tuple[str, ...]
    framing: Framing

    @model_validator(mode="after")
    def _complete(self) -> SeedTemplates:
        for field, keys in (("templates", self.templates), ("framing.emoji_by_label", self.framing.emoji_by_label)):
            if sorted(keys) != sorted(LABELS):
                raise ValueError(f"{field} must have exactly the labels {', '.join(LABELS)}; it has {', '.join(keys)}")
        lists = {**{f"fillers.{k}": v for k, v in self.fillers.items()},
                 **{f"templates.{k}": v for k, v in self.templates.items()},
                 **{f"framing.emoji_by_label.{k}": v for k, v in self.framing.emoji_by_label.items()},
                 **{f"generated.{k}": v for k, v in self.generated}, "hard_negatives": self.hard_negatives}
        if empty := [name for name, values in lists.items() if not values]:
            raise ValueError(f"{', '.join(empty)} must not be empty (a slot or label with no words cannot be drawn)")
        known = set(self.fillers) | set(_GENERATED)
        for template in (*self.hard_negatives, *(t for pool in self.templates.values() for t in pool)):
            if unknown := [m.group(0) for m in _SLOT.finditer(template) if m.group(1) not in known]:
                raise ValueError(f"template {template!r} names unknown slot(s) {', '.join(unknown)}: add them to "
                                 "fillers or fix the spelling")
        return self


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML keeps the last of two equal keys; a list of words dropped that way would go unnoticed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@cache
def load_templates(path: Path = TEMPLATES_PATH) -> SeedTemplates:
    """The templates and fillers in ``path`` (read once), checked: every label present, no empty list, every slot
    a template names is known."""
    try:
        with path.open(encoding="utf-8") as file:
            data = yaml.load(file, Loader=_UniqueKeyLoader)  # a SafeLoader that refuses duplicate keys
        return SeedTemplates.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(": ".join(filter(None, (".".join(map(str, e["loc"])),
                                                     e["msg"].removeprefix("Value error, "))))
                             for e in exc.errors(include_url=False))
        raise ConfigError(f"{path}: not usable seed templates: {problems}; fix the file "
                          "(tests/unit/test_seed_corpus.py checks it)") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not usable seed templates ({exc}); fix the file or restore it from git") from exc


# -- slots made by code ---------------------------------------------------------------------------------------

_CODE_CHARS = "abcdefghjkmnpqrstuvwxyz23456789"


def _handle(rng: random.Random, words: GeneratedWords) -> str:
    base = rng.choice(words.handle_bases)
    return "@" + base + (str(rng.randint(1, 999)) if rng.random() < 0.4 else "")


def _spam_url(rng: random.Random, words: GeneratedWords) -> str:
    code = "".join(rng.choice(_CODE_CHARS) for _ in range(rng.randint(4, 7)))
    shape = rng.randrange(5)
    if shape == 0:
        return "bit.ly/" + code
    if shape == 1:
        return "https://" + rng.choice(words.spam_url_stems) + "-" + code + rng.choice(words.spam_url_tlds)
    if shape == 2:
        return "tinyurl.com/" + code
    if shape == 3:
        return "http://" + rng.choice(words.spam_url_hosts) + "." + code + ".net"
    return "www." + code + rng.choice(words.spam_url_domains)


def _safe_url(rng: random.Random, words: GeneratedWords) -> str:
    if rng.random() < 0.2:  # honest people shorten links too
        return "bit.ly/" + "".join(rng.choice(_CODE_CHARS) for _ in range(rng.randint(4, 7)))
    return rng.choice(words.safe_url_sites) + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789")
                                                      for _ in range(rng.randint(5, 9)))


_GENERATED: dict[str, Callable[[random.Random, GeneratedWords], str]] = {
    "handle": _handle,
    "url": _spam_url,
    "safe_url": _safe_url,
    "n": lambda rng, _: str(rng.choice((2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50))),
    "money": lambda rng, _: f"{rng.choice((50, 100, 250, 300, 500, 750, 1000, 1500, 2000, 5000, 10000)):,}",
    "small_money": lambda rng, _: f"{rng.randint(1, 19)}.{rng.choice(('99', '49', '00'))}",
    "digits": lambda rng, _: str(rng.randint(100000, 999999)),
    "code": lambda rng, _: "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)),
    "phone": lambda rng, _: f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
    "age": lambda rng, _: str(rng.randint(19, 52)),
}

_SLOT = re.compile(r"\{([a-z_]+?)(\d?)\}")
_WORD = re.compile(r"^[A-Za-z]{4,}$")
_DOUBLE_THE = re.compile(r"\b([Tt]he) the ")


# -- composing a post -----------------------------------------------------------------------------------------


class _Composer:
    """Posts of one label at a time from the templates, drawing every choice from one seeded ``rng``."""

    def __init__(self, words: SeedTemplates, rng: random.Random) -> None:
        self.words = words
        self.rng = rng

    def fill(self, template: str) -> str:
        rng, fillers = self.rng, self.words.fillers
        chosen: dict[str, str] = {}

        def sub(match: re.Match[str]) -> str:
            token = match.group(0)
            if token not in chosen:
                base = match.group(1)
                if base in _GENERATED:
                    chosen[token] = _GENERATED[base](rng, self.words.generated)
                else:
                    # a second draw from the same list ({team2}) differs from the first ({team})
                    taken = {v for k, v in chosen.items() if k.startswith("{" + base)}
                    chosen[token] = rng.choice([v for v in fillers[base] if v not in taken] or fillers[base])
            return chosen[token]

        return _DOUBLE_THE.sub(r"\1 ", _SLOT.sub(sub, template))

    def stylise(self, text: str, label: str) -> str:
        """Casual surface noise applied to every label alike: case, typos, slang, emojis, hashtags, punctuation."""
        rng, framing = self.rng, self.words.framing
        if rng.random() < 0.35:
            for phrase, options in framing.paraphrases:
                pattern = rf"\b{re.escape(phrase)}\b(?!')"
                if re.search(pattern, text) and rng.random() < 0.7:
                    text = re.sub(pattern, rng.choice(options), text, count=1)
        if rng.random() < 0.15:
            for formal, casual in framing.slang:
                if rng.random() < 0.6:
                    text = re.sub(rf"\b{re.escape(formal)}\b(?!')", casual, text)
        if rng.random() < 0.16:
            words = text.split(" ")
            candidates = [i for i, w in enumerate(words) if _WORD.match(w)]
            for i in rng.sample(candidates, min(len(candidates), rng.randint(1, 2))):
                words[i] = _typo(words[i], rng)
            text = " ".join(words)
        roll = rng.random()
        if roll < 0.28:
            text = text.lower()
        elif roll < 0.33:
            text = text.upper()
        elif roll < 0.42:
            words = text.split(" ")
            candidates = [i for i, w in enumerate(words) if _WORD.match(w)]
            if candidates:
                i = rng.choice(candidates)
                words[i] = words[i].upper()
            text = " ".join(words)
        if rng.random() < 0.25:
            text = text.rstrip(".") + rng.choice(("!!", "!!!", "?!", "...", "!", " !!", "!!1", ".."))
        if rng.random() < 0.25:
            emojis = framing.emoji_by_label[label]
            text += " " + "".join(rng.choice(emojis) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.1:
            text += " " + " ".join(rng.sample(framing.hashtags, rng.randint(1, 2)))
        return text

    def compose(self, pool: Sequence[str], label: str) -> str:
        rng, framing = self.rng, self.words.framing
        text = self.fill(rng.choice(pool))
        roll = rng.random()
        if roll < 0.03:
            text = rng.choice(framing.preambles) + " " + text
            if rng.random() < 0.5:
                text = _join(text, self.fill(rng.choice(pool)))
        elif roll < 0.06:
            text = _join(text, "also " + self.fill(rng.choice(pool)), glue=", ")
        elif roll < 0.15:
            # harm embedded in an otherwise ordinary post, and ordinary posts with two thoughts
            text = _join(self.fill(rng.choice(self.words.templates["safe"])), text)
        if rng.random() < 0.12:
            text = rng.choice(framing.openers) + " " + text
        if rng.random() < 0.1:
            text = text + " " + rng.choice(framing.closers)
        return self.stylise(text, label)

    def draw(self, pool: Sequence[str], label: str, count: int, hard_negative: bool,
             seen: set[str]) -> list[tuple[str, str, bool]]:
        """``count`` posts not in ``seen`` (which takes them)."""
        out: list[tuple[str, str, bool]] = []
        attempts = 0
        while len(out) < count:
            attempts += 1
            if attempts > 200 * count + 1000:
                raise ValueError(f"could not compose {count} distinct {label!r} posts")
            text = " ".join(self.compose(pool, label).split(" ")).strip()
            if text in seen:
                continue
            seen.add(text)
            out.append((text, label, hard_negative))
        return out


def _join(first: str, second: str, glue: str = ". ") -> str:
    """Two sentences as one post, without doubling the first one's end punctuation."""
    if first.endswith((".", "!", "?")):
        return first + " " + second
    return first + glue + second


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


# -- the corpus -----------------------------------------------------------------------------------------------


def generate(n_per_label: Mapping[str, int] | None = None, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    """Compose the seed corpus: a list of ``{id, text, label, hard_negative, source}`` rows.

    The same ``n_per_label`` and ``seed`` always give the same rows, ids and order. Labels missing from
    ``n_per_label`` get no rows; exact duplicate texts are never emitted.
    """
    counts = dict(DEFAULT_COUNTS if n_per_label is None else n_per_label)
    unknown = sorted(set(counts) - set(LABELS))
    if unknown:
        raise ValueError(f"labels not in the taxonomy: {unknown}")
    if any(n < 0 for n in counts.values()):
        raise ValueError("counts must be non-negative")
    words = load_templates()
    rng = random.Random(seed)
    composer = _Composer(words, rng)
    seen: set[str] = set()
    drawn: list[tuple[str, str, bool]] = []
    for label in LABELS:
        n = counts.get(label, 0)
        if label == "safe":
            n_hard = round(n * HARD_NEGATIVE_FRACTION)
            drawn += composer.draw(words.hard_negatives, label, n_hard, True, seen)
            drawn += composer.draw(words.templates["safe"], label, n - n_hard, False, seen)
        else:
            drawn += composer.draw(words.templates[label], label, n, False, seen)
    rng.shuffle(drawn)
    return [
        {"id": f"seed-{i:06d}", "text": text, "label": label, "hard_negative": hard, "source": "seed"}
        for i, (text, label, hard) in enumerate(drawn, start=1)
    ]


def dumps_jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    """The JSON Lines text of ``rows``: UTF-8 friendly (no ASCII escaping), one object per line."""
    return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows)


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` to ``path`` as UTF-8 JSON Lines (``\\n`` line ends, trailing newline)."""
    Path(path).write_text(dumps_jsonl(rows), encoding="utf-8", newline="\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a well-formed JSON Lines file (every non-blank line an object)."""
    rows: list[dict[str, Any]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path}: not a JSON object: {line[:80]!r}")
            rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.data.seed [OUT.jsonl] [--seed N]``: regenerate the seed corpus."""
    args = list(sys.argv[1:] if argv is None else argv)
    seed = DEFAULT_SEED
    if "--seed" in args:
        i = args.index("--seed")
        try:
            seed = int(args[i + 1])
        except (IndexError, ValueError):
            print("usage: python -m pipeline.data.seed [OUT.jsonl] [--seed N]", file=sys.stderr)
            return 2
        del args[i:i + 2]
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m pipeline.data.seed [OUT.jsonl] [--seed N]", file=sys.stderr)
        return 2
    out = Path(args[0]) if args else CORPUS_PATH
    rows = generate(seed=seed)
    write_jsonl(out, rows)
    by_label = {label: sum(1 for r in rows if r["label"] == label) for label in LABELS}
    print(f"wrote {len(rows)} rows to {out}: " + ", ".join(f"{k}={v}" for k, v in by_label.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
