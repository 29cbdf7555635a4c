"""The fields of the event query language (``GET /v1/events?q=``); the grammar is assets'."""

from __future__ import annotations

from assetd.assets.query import Field, FieldKind, FieldMap, column_field
from assetd.events.models import Event


def details_path_field(path: tuple[str, ...]) -> Field:
    """``details.<path>``: a value inside the event's details JSON."""
    return Field(FieldKind.JSON, Event.details, path=path)


ID_FIELD = column_field(FieldKind.STRING, Event.id)
CREATED_AT_FIELD = column_field(FieldKind.DATE, Event.created_at)

EVENT_FIELDS = FieldMap(
    {
        "id": ID_FIELD,
        "type": column_field(FieldKind.STRING, Event.type),
        "actor": column_field(FieldKind.STRING, Event.actor),
        "assetId": column_field(FieldKind.STRING, Event.asset_id),
        "versionNumber": column_field(FieldKind.NUMBER, Event.version_number),
        "keyId": column_field(FieldKind.STRING, Event.key_id),
        "createdAt": CREATED_AT_FIELD,
        "details": Field(FieldKind.JSON_OBJECT, Event.details),
    },
    {"details": details_path_field},
)
