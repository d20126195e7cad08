"""The settings reference, ``docs/settings.md``, generated from :mod:`pipeline.settings`.

One table per settings group: each variable with its type, default and meaning (the fields' ``description``),
so the reference cannot drift from the code. ``modcascade settings --reference`` writes it; a test fails when the
committed file differs from what this module renders (the schemas of :mod:`pipeline.schema_export` are kept the
same way). A field without a description is an error here: every setting says what it means.
"""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from pipeline.errors import ConfigError
from pipeline.settings import ENV_PREFIX, Settings, env_name

REFERENCE_PATH = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
REGENERATE = "modcascade settings --reference"

_INTRO = f"""\
# Settings reference

<!-- Generated from pipeline/settings.py by `{REGENERATE}`; do not edit by hand.
A test fails when this file differs from what the code generates. -->

Every setting is an environment variable `MODCASCADE_<GROUP>_<NAME>` (names are case-insensitive), read by
[`pipeline/settings.py`](../pipeline/settings.py), the only module that reads the environment. A `MODCASCADE_*`
variable that names no setting is an error that suggests the closest real name, so a typo never passes silently.
Values are validated at startup; an invalid one is a one-line error naming the variable.

- `modcascade settings` prints the effective settings (environment and defaults), secrets masked.
- `Settings.to_env()` renders settings back into these variables (secrets included, in clear text), and
  `Settings.child_env(os.environ)` gives a child process exactly the same settings.
- Secrets (type `secret`) print masked everywhere else.
- Deploy files set these variables too: `deploy/compose/`, `deploy/k8s/base/settings.env`; a test loads the
  values the manifests give the workers.

Types: `str` text, `int` / `float` numbers, `bool` `true` or `false`, `path` a file or folder (relative paths
are relative to the working directory), `secret` text that prints masked; "one of" lists the accepted values.
"unset" means no value: the meaning column says what happens then.
"""


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))  # pydantic's constraint attributes


def _describe_type(field: FieldInfo) -> str:
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        text = "one of " + ", ".join(f"`{value}`" for value in get_args(annotation))
    elif annotation is SecretStr:
        text = "secret"
    elif isinstance(annotation, type) and issubclass(annotation, Path):
        text = "path"
    elif isinstance(annotation, type):
        text = annotation.__name__
    else:
        raise ConfigError(f"settings reference: no rendering for the type {annotation!r}")
    bounds = [f"{symbol} {getattr(constraint, attribute)}" for constraint in field.metadata
              for attribute, symbol in _BOUNDS if getattr(constraint, attribute, None) is not None]
    return f"{text}, {' and '.join(bounds)}" if bounds else text


def _describe_default(field: FieldInfo) -> str:
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if default == "":
        return '`""` (empty)'
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _variable(group: type[BaseSettings], name: str, field: FieldInfo) -> str:
    names = [env_name(group, name)]
    if isinstance(field.validation_alias, AliasChoices):
        names += [str(choice).upper() for choice in field.validation_alias.choices[1:]]
    first, *others = (f"`{n}`" for n in names)
    return f"{first} (or {', '.join(others)})" if others else first


def _table(group: type[BaseSettings], names: list[str]) -> list[str]:
    lines = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name in names:
        field = group.model_fields[name]
        if not field.description:
            raise ConfigError(f"settings reference: {group.__name__}.{name} has no description; add "
                              "description= (what it means and why one would change it) in pipeline/settings.py")
        lines.append(f"| {_variable(group, name, field)} | {_cell(_describe_type(field))} | "
                     f"{_cell(_describe_default(field))} | {_cell(field.description)} |")
    return lines


def _docstring(group: type[BaseSettings]) -> str:
    text = " ".join(inspect.cleandoc(group.__doc__ or "").split())
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _is_group(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings)


def render() -> str:
    """The reference as Markdown: the top-level settings first, then one section per group."""
    top = [name for name, field in Settings.model_fields.items() if not _is_group(field)]
    sections = [_INTRO, f"## General (`{ENV_PREFIX}*`)\n",
                "Settings of every command and worker that belong to no group.\n", *_table(Settings, top), ""]
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if not (isinstance(group, type) and issubclass(group, BaseSettings)):
            continue
        prefix = str(group.model_config.get("env_prefix", ""))
        sections += [f"## `{name}` (`{prefix}*`)\n", _docstring(group) + "\n",
                     *_table(group, list(group.model_fields)), ""]
    return "\n".join(sections)


def is_current(path: Path = REFERENCE_PATH) -> bool:
    """Whether ``path`` holds exactly what :func:`render` generates."""
    return path.is_file() and path.read_text(encoding="utf-8") == render()


def write(path: Path = REFERENCE_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
