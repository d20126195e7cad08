"""The published JSON Schemas are current and accept what the codec produces."""

from __future__ import annotations

import jsonschema
import pytest

from pipeline import codec, schema_export
from pipeline.records import Record
from tests.support.samples import sample_records


def test_committed_schemas_match_the_models() -> None:
    stale = schema_export.stale_files()
    assert not stale, f"schemas out of date: {stale}; run `make schemas` and commit pipeline/schemas/"


@pytest.mark.parametrize("record", sample_records(), ids=lambda r: type(r).__name__)
def test_encoded_records_validate_against_their_published_schema(record: Record) -> None:
    name = schema_export.schema_filename(type(record).__name__)
    schema = codec.loads((schema_export.SCHEMA_DIR / name).read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(codec.loads(codec.encode(record)), schema, cls=jsonschema.Draft202012Validator)


def test_schema_rejects_a_post_without_text() -> None:
    schema = codec.loads((schema_export.SCHEMA_DIR / schema_export.schema_filename("Post")).read_bytes())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"id": "p1"}, schema)
