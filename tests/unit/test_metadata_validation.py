"""The pure metadata check: paths, kinds of error, and nothing raised for any JSON value."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetd.templates.schemas import MetadataField
from assetd.templates.validation import MAX_ERRORS, FieldError, validate_metadata

FIELDS = [
    MetadataField.model_validate(f)
    for f in (
        {"name": "title", "type": "string", "required": True},
        {"name": "tags", "type": "multi", "allowedValues": ["a", "b"]},
        {
            "name": "rows",
            "type": "grid",
            "columns": [{"name": "n", "type": "number", "required": True}],
        },
    )
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


class TestValidateMetadata:
    def test_paths_read_like_the_json(self) -> None:
        assert FieldError(("metadata", "rows", 2, "n"), "type", "x").field == "metadata.rows[2].n"
        assert FieldError(("metadata",), "type", "x").field == "metadata"

    def test_fitting_metadata_has_no_errors(self) -> None:
        metadata = {"title": "t", "tags": ["a"], "rows": [{"n": 1}, {"n": 2.5}]}
        assert validate_metadata(FIELDS, metadata) == []

    @pytest.mark.parametrize(
        ("metadata", "expected"),
        [
            ({}, {"metadata.title": "required"}),
            ({"title": "t", "tags": ["c"]}, {"metadata.tags[0]": "not_allowed"}),
            ({"title": "t", "rows": [{}]}, {"metadata.rows[0].n": "required"}),
            ({"title": "t", "rows": [{"n": float("nan")}]}, {"metadata.rows[0].n": "type"}),
            ({"title": "t", "rows": [{"n": False}]}, {"metadata.rows[0].n": "type"}),
            ({"title": "t", "rows": {"n": 1}}, {"metadata.rows": "type"}),
            ("text", {"metadata": "type"}),
        ],
    )
    def test_errors(self, metadata: Any, expected: dict[str, str]) -> None:
        found = {e.field: e.type for e in validate_metadata(FIELDS, metadata)}
        assert found == expected

    def test_errors_are_capped(self) -> None:
        metadata = {"title": "t", "rows": [{"n": "x"}] * 500, **{f"k{i}": 1 for i in range(500)}}
        assert len(validate_metadata(FIELDS, metadata)) == MAX_ERRORS

    @given(json_values)
    def test_any_json_gets_a_list_of_errors_not_an_exception(self, metadata: Any) -> None:
        for error in validate_metadata(FIELDS, metadata):
            assert error.as_dict()["field"].startswith("metadata")
