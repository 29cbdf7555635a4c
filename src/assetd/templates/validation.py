"""Check an asset's metadata against its template: pure, and every wrong field is reported."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from assetd.templates.schemas import (
    MAX_GRID_ROWS,
    MAX_MULTI_VALUES,
    MAX_VALUE_LENGTH,
    GridColumn,
    MetadataField,
)

# Enough to fix a request by; a hostile grid of a thousand bad rows doesn't get a megabyte back.
MAX_ERRORS = 100

# ISO 8601 extended format only, so that stored dates compare as strings in queries.
_DATE = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?$"
)

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class FieldError:
    loc: Path
    type: str
    msg: str

    @property
    def field(self) -> str:
        """The path as people write it: metadata.sizes[2], metadata.prices[0].amount."""
        text = ""
        for part in self.loc:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text

    def as_dict(self) -> dict[str, Any]:
        # loc/msg/type like request validation errors, so every error renderer shows them.
        return {"field": self.field, "loc": list(self.loc), "type": self.type, "msg": self.msg}


def validate_metadata(fields: Sequence[MetadataField], metadata: Any) -> list[FieldError]:
    """Every way `metadata` breaks the template's `fields`; empty when it fits."""
    root: Path = ("metadata",)
    if not isinstance(metadata, dict):
        return [FieldError(root, "type", "metadata must be an object")]
    errors: list[FieldError] = []
    known = {f.name for f in fields}
    for key in metadata:
        if key not in known:
            errors.append(FieldError((*root, key), "unknown_field", "not a field of the template"))
    for spec in fields:
        value = metadata.get(spec.name)
        loc = (*root, spec.name)
        if _is_empty(value):
            if spec.required:
                errors.append(FieldError(loc, "required", "this field is required"))
            continue
        errors.extend(_check_field(spec, value, loc))
    return errors[:MAX_ERRORS]


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _check_field(spec: MetadataField, value: Any, loc: Path) -> list[FieldError]:
    if spec.type == "string":
        return _check_string(value, loc)
    if spec.type == "vocabulary":
        return _check_choice(value, spec.allowed_values or [], loc)
    if spec.type == "date":
        return _check_date(value, loc)
    if spec.type == "multi":
        return _check_multi(value, spec.allowed_values, loc)
    return _check_grid(value, spec.columns or [], loc)


def _check_string(value: Any, loc: Path) -> list[FieldError]:
    if not isinstance(value, str):
        return [FieldError(loc, "type", "must be a string")]
    if len(value) > MAX_VALUE_LENGTH:
        return [FieldError(loc, "too_long", f"must be at most {MAX_VALUE_LENGTH} characters")]
    return []


def _check_choice(value: Any, allowed: Sequence[str], loc: Path) -> list[FieldError]:
    if not isinstance(value, str):
        return [FieldError(loc, "type", "must be a string, one of the allowed values")]
    if value not in allowed:
        shown = ", ".join(repr(v) for v in allowed[:10]) + (", …" if len(allowed) > 10 else "")
        return [FieldError(loc, "not_allowed", f"must be one of {shown}")]
    return []


def _check_date(value: Any, loc: Path) -> list[FieldError]:
    message = "must be an ISO 8601 date (2024-05-31) or date-time (2024-05-31T12:00:00Z)"
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return [FieldError(loc, "date", message)]
    try:
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value)
    except ValueError:  # well-formed but impossible, like 2024-02-30
        return [FieldError(loc, "date", message)]
    return []


def _check_multi(value: Any, allowed: Sequence[str] | None, loc: Path) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(loc, "type", "must be a list of strings")]
    if len(value) > MAX_MULTI_VALUES:
        return [FieldError(loc, "too_many", f"must have at most {MAX_MULTI_VALUES} values")]
    errors: list[FieldError] = []
    for index, item in enumerate(value):
        if allowed is not None:
            errors.extend(_check_choice(item, allowed, (*loc, index)))
        else:
            errors.extend(_check_string(item, (*loc, index)))
    return errors


def _check_grid(value: Any, columns: Sequence[GridColumn], loc: Path) -> list[FieldError]:
    if not isinstance(value, list):
        return [FieldError(loc, "type", "must be a list of rows (objects)")]
    if len(value) > MAX_GRID_ROWS:
        return [FieldError(loc, "too_many", f"must have at most {MAX_GRID_ROWS} rows")]
    by_name = {c.name: c for c in columns}
    errors: list[FieldError] = []
    for index, row in enumerate(value):
        row_loc = (*loc, index)
        if not isinstance(row, dict):
            errors.append(FieldError(row_loc, "type", "a row must be an object of columns"))
            continue
        for key in row:
            if key not in by_name:
                errors.append(
                    FieldError((*row_loc, key), "unknown_column", "not a column of the grid")
                )
        for column in columns:
            cell = row.get(column.name)
            cell_loc = (*row_loc, column.name)
            if _is_empty(cell):
                if column.required:
                    errors.append(FieldError(cell_loc, "required", "this column is required"))
                continue
            errors.extend(_check_cell(column, cell, cell_loc))
        if len(errors) > MAX_ERRORS:
            break
    return errors


def _check_cell(column: GridColumn, value: Any, loc: Path) -> list[FieldError]:
    if column.type == "string":
        return _check_string(value, loc)
    if column.type == "vocabulary":
        return _check_choice(value, column.allowed_values or [], loc)
    if column.type == "date":
        return _check_date(value, loc)
    # JSON true/false are Python bools, which are ints: not numbers here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return [FieldError(loc, "type", "must be a number")]
    if isinstance(value, float) and not math.isfinite(value):
        return [FieldError(loc, "type", "must be a finite number")]
    return []
