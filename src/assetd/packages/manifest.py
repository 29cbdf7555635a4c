"""manifest.json: what a package holds, as a pydantic model (and so as a JSON Schema).

The schema in docs/packages.schema.json is generated from these classes (`assetd package
schema`), and a test keeps the two equal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AnyUrl, ConfigDict, Field, StringConstraints, model_validator

from assetd.assets.models import Access, AssetKind, AssetType
from assetd.assets.schemas import MAX_TAGS, RefId
from assetd.tenants.schemas import InputModel

FORMAT_VERSION = 1
MANIFEST_PATH = "manifest.json"
MAX_ENTRIES = 10_000
MAX_COLLECTIONS = 1_000
MAX_DEPENDENCIES = 100

# Ids from elsewhere: assetd's own 24-hex ids, or another system's (UUIDs and the like).
SourceId = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:\-]+$")
]


class ManifestModel(InputModel):
    # Unknown fields are refused: a typo in a hand-written manifest must not pass silently.
    model_config = ConfigDict(extra="forbid")


class PackageFile(ManifestModel):
    """Where an entry's bytes are in the zip, and what they must hash to."""

    path: str = Field(
        min_length=1,
        max_length=1024,
        description="The member's name in the zip: relative, '/'-separated, no '..'.",
    )
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="SHA-256 of the member's bytes, 64 lowercase hex digits."
    )
    size: int | None = Field(
        None, ge=0, description="Size in bytes; checked when given (exports give it)."
    )
    filename: str | None = Field(
        None,
        max_length=255,
        description="The original file name (its extension counts for policies); "
        "default: the last segment of path.",
    )


class PackageCollection(ManifestModel):
    id: SourceId
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)


class PackageEntry(ManifestModel):
    """One asset: its identity, description, content and links."""

    id: SourceId = Field(
        description="The asset's id where the package was made. Kept on install when it is "
        "an assetd id that is free; otherwise the asset gets a new id (`resolvedTo`)."
    )
    kind: AssetKind = AssetKind.BLOB
    type: AssetType
    name: str = Field("", max_length=500)
    description: str = Field("", max_length=10_000)
    access: Access = Access.PRIVATE
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=MAX_TAGS
    )
    ref_ids: list[RefId] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)
    url: AnyUrl | None = Field(None, description="A LINK's target; LINK entries only.")
    file: PackageFile | None = Field(
        None, description="A BLOB's content; a BLOB without one is metadata-only."
    )
    collections: list[SourceId] = Field(
        default_factory=list,
        max_length=MAX_COLLECTIONS,
        description="Ids of collections (declared in the manifest) the asset belongs to.",
    )
    depends_on: list[SourceId] = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="Ids of assets this one needs: in the package, or already installed.",
    )

    @model_validator(mode="after")
    def _kind_fits(self) -> PackageEntry:
        if self.kind is AssetKind.LINK and (self.url is None or self.file is not None):
            raise ValueError("a LINK entry has a url and no file")
        if self.kind is AssetKind.BLOB and self.url is not None:
            raise ValueError("a BLOB entry has no url")
        if self.id in self.depends_on:
            raise ValueError("an entry cannot depend on itself")
        if len(set(self.depends_on)) != len(self.depends_on):
            raise ValueError("dependsOn names an id twice")
        return self


class Manifest(ManifestModel):
    """manifest.json, at the root of the zip."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://assetd.dev/schemas/package-manifest-1.json",
        },
    )

    format_version: int = Field(
        description=f"Format of this manifest; this server reads {FORMAT_VERSION}."
    )
    name: str = Field(min_length=1, max_length=200)
    version: str = Field(min_length=1, max_length=50)
    description: str = Field("", max_length=10_000)
    created_at: datetime | None = None
    created_by: str | None = Field(None, max_length=300)
    collections: list[PackageCollection] = Field(default_factory=list, max_length=MAX_COLLECTIONS)
    entries: list[PackageEntry] = Field(max_length=MAX_ENTRIES)

    @model_validator(mode="after")
    def _references_hold(self) -> Manifest:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(
                f"formatVersion {self.format_version} is not one this server reads "
                f"({FORMAT_VERSION})"
            )
        _unique("entry id", [e.id for e in self.entries])
        _unique("collection id", [c.id for c in self.collections])
        _unique("collection name", [c.name for c in self.collections])
        declared = {c.id for c in self.collections}
        for entry in self.entries:
            unknown = [c for c in entry.collections if c not in declared]
            if unknown:
                raise ValueError(
                    f"entry {entry.id} names collections the manifest does not declare: "
                    + ", ".join(unknown[:5])
                )
        return self


def _unique(what: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} appears twice")
        seen.add(value)


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of manifest.json, as published in docs/packages.schema.json."""
    return Manifest.model_json_schema(by_alias=True)


if __name__ == "__main__":  # python -m assetd.packages.manifest > docs/packages.schema.json
    import json
    import sys

    json.dump(manifest_json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
