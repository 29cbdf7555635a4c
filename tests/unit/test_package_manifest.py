"""The package manifest: its published JSON Schema, and the rules beyond the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import ValidationError

from assetd.packages.archive import _path_problem
from assetd.packages.manifest import Manifest, manifest_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "packages.schema.json"
SHA = "ab" * 32


def manifest(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "formatVersion": 1,
        "name": "kit",
        "version": "1.0",
        "collections": [{"id": "c1", "name": "kit"}],
        "entries": [
            {
                "id": "0190aa00000000000000a001",
                "type": "image",
                "file": {"path": "files/a.jpg", "sha256": SHA, "size": 3},
                "collections": ["c1"],
            },
            {
                "id": "3f2c-uuid-like",
                "type": "other",
                "kind": "LINK",
                "url": "https://example.com/",
                "dependsOn": ["0190aa00000000000000a001"],
            },
        ],
    }
    data.update(overrides)
    return data


def test_published_schema_is_the_generated_one() -> None:
    # Regenerate with: python -m assetd.packages.manifest > docs/packages.schema.json
    assert json.loads(SCHEMA_FILE.read_text()) == manifest_json_schema()


def test_schema_accepts_what_the_model_accepts() -> None:
    jsonschema.Draft202012Validator(manifest_json_schema()).validate(manifest())
    Manifest.model_validate(manifest())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"formatVersion": 2}, "formatVersion 2"),
        ({"collections": [{"id": "c1", "name": "a"}, {"id": "c1", "name": "b"}]}, "twice"),
        ({"surprise": True}, "Extra inputs"),
    ],
)
def test_manifest_rules(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Manifest.model_validate(manifest(**change))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"id": "x", "type": "other", "kind": "LINK"}, "a LINK entry has a url"),
        ({"id": "x", "type": "other", "url": "https://e.com/"}, "a BLOB entry has no url"),
        ({"id": "x", "type": "other", "dependsOn": ["x"]}, "cannot depend on itself"),
        ({"id": "x", "type": "other", "dependsOn": ["y", "y"]}, "twice"),
        ({"id": "x", "type": "other", "collections": ["nowhere"]}, "does not declare"),
        ({"id": "../x", "type": "other"}, "pattern"),
        ({"id": "x", "type": "other", "file": {"path": "a", "sha256": "AB" * 32}}, "pattern"),
    ],
)
def test_entry_rules(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Manifest.model_validate(manifest(entries=[entry]))


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("files/a.txt", True),
        ("files/dir/", True),
        ("files/ünïcode name.txt", True),
        ("", False),
        ("/etc/passwd", False),
        ("../x", False),
        ("a/../../x", False),
        ("a//b", False),
        ("./a", False),
        ("a\\b", False),
        ("C:/x", False),
        ("a\x00b", False),
        ("a\nb", False),
        ("x" * 1025, False),
    ],
)
def test_member_names(name: str, safe: bool) -> None:
    assert (_path_problem(name) is None) is safe
