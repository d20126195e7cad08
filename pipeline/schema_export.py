"""JSON Schemas of the records, generated from the models and published in ``pipeline/schemas/``.

Producers and consumers in other languages validate against these files. They are committed; a test
fails when a model changes and the files were not regenerated (`make schemas`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import codec
from pipeline.records import RECORD_TYPES, SCHEMA_VERSION

SCHEMA_DIR = Path(__file__).parent / "schemas"


def schema_filename(record_name: str) -> str:
    return f"{record_name}.v{SCHEMA_VERSION}.schema.json"


def generate() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema for every record type (validation mode: what we accept)."""
    out: dict[str, dict[str, Any]] = {}
    for model in RECORD_TYPES:
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"modcascade/{schema_filename(model.__name__)}"
        schema.setdefault("description", (model.__doc__ or "").strip().splitlines()[0])
        out[schema_filename(model.__name__)] = schema
    return out


def render(schema: dict[str, Any]) -> bytes:
    return codec.dumps_pretty(schema)


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from what the models generate."""
    return [name for name, schema in generate().items()
            if not (directory / name).exists() or (directory / name).read_bytes() != render(schema)]


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in generate().items():
        path = directory / name
        path.write_bytes(render(schema))
        paths.append(path)
    return paths
