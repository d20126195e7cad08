"""docs/settings.md is generated from pipeline/settings.py, complete, and current."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.testing import CliRunner

from pipeline import settings_reference
from pipeline.cli import app
from pipeline.errors import ConfigError
from pipeline.settings import Settings, _known_env_names

pytestmark = pytest.mark.unit


def test_the_committed_reference_is_current() -> None:
    assert settings_reference.is_current(), (
        f"{settings_reference.REFERENCE_PATH} is stale: run `{settings_reference.REGENERATE}` and commit it")


def test_the_check_command_passes_on_the_committed_reference() -> None:
    result = CliRunner().invoke(app, ["settings", "--reference", "--check"])
    assert result.exit_code == 0, result.output


def rows() -> dict[str, list[str]]:
    """First variable of each table row → its cells (variable, type, default, meaning)."""
    out: dict[str, list[str]] = {}
    for line in settings_reference.render().splitlines():
        if line.startswith("| `MODCASCADE_"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            out[cells[0].split("`")[1]] = cells
    return out


def test_every_setting_has_one_row_with_type_default_and_meaning() -> None:
    table = rows()
    prefixed = {name for name in _known_env_names() if name.startswith("MODCASCADE_")}
    assert set(table) == prefixed
    assert all(len(cells) == 4 and all(cells) for cells in table.values())


def test_rows_show_aliases_bounds_literals_secrets_and_unset_defaults() -> None:
    table = rows()
    assert table["MODCASCADE_KAFKA_BOOTSTRAP"][:3] == ["`MODCASCADE_KAFKA_BOOTSTRAP` (or `KAFKA_BOOTSTRAP`)", "str",
                                                       "unset"]
    assert table["MODCASCADE_METRICS_PORT"][1:3] == ["int, ≥ 0 and ≤ 65535", "`9464`"]
    assert table["MODCASCADE_MODEL_BACKEND"][1:3] == ["one of `vllm-http`, `vllm-local`, `transformers`",
                                                      "`vllm-http`"]
    assert table["MODCASCADE_KAFKA_SASL_PASSWORD"][1] == "secret"
    assert table["MODCASCADE_MODEL_DIR"][1:3] == ["path", "`models/current`"]
    assert table["MODCASCADE_KAFKA_SSL_CHECK_HOSTNAME"][2] == "`true`"
    assert table["MODCASCADE_WORKER_CACHE_TTL_S"][1:3] == ["float, > 0", "`600.0`"]


def test_each_group_has_a_section_with_its_docstring() -> None:
    text = settings_reference.render()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseSettings):
            prefix = group.model_config.get("env_prefix")
            assert f"## `{name}` (`{prefix}*`)" in text
    assert "How clients reach Kafka. Without `bootstrap` the embedded broker is used." in text


def test_a_setting_without_a_description_is_refused() -> None:
    class Undocumented(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="MODCASCADE_X_")
        documented: int = Field(default=1, description="has one")
        bare: int = 2

    with pytest.raises(ConfigError, match=r"Undocumented\.bare has no description"):
        settings_reference._table(Undocumented, list(Undocumented.model_fields))


def test_a_stale_file_is_detected_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "settings.md"
    assert not settings_reference.is_current(path)
    path.parent.mkdir()
    path.write_text(settings_reference.render().replace("`9464`", "`9999`"), encoding="utf-8")
    assert not settings_reference.is_current(path)
    assert settings_reference.write(path) == path
    assert settings_reference.is_current(path)
