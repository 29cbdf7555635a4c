"""The asset query language (seed 001 ``q`` and ``sort``), compiled to SQLAlchemy expressions.

Pure: no I/O. Every filter runs in SQL, the same way on SQLite and PostgreSQL.

``q`` semantics:

- Terms are ``field:value`` separated by whitespace; all terms must match (AND).
- ``field:(a,b)`` matches any of the values; ``field:(>=1 AND <=9)`` matches all of them.
  Separators cannot be mixed in one group and groups do not nest.
- A plain value on a string field is an exact, case-sensitive equality (no prefix or word
  match; use a regex for that). Enum fields (kind, type, access, state) take their values in
  any case; a value outside the enum is an error that lists the allowed ones.
- ``"..."`` quotes a value that contains spaces or separators; ``\\"`` is a quote and ``\\\\``
  a backslash, any other backslash is kept. A quoted value is always a literal, so
  ``name:"null"`` finds the name "null".
- ``>``, ``>=``, ``<``, ``<=`` work on number and date fields only. Dates are ISO-8601, quoted
  or not; a trailing ``Z`` is UTC, a naive date or date-time is UTC.
- ``field:null`` matches a missing value, JSON null, an empty string, array or object;
  ``field:exists`` is its exact negation.
- ``field:~regex`` searches (unanchored, case-sensitive; prefix ``(?i)`` to ignore case) with
  the regex syntax SQLite (Python ``re``) and PostgreSQL share: no backreferences, ``\\b``,
  named groups, POSIX classes, possessive or nested quantifiers (``(a+)+``); at most 200
  characters; "." matches newlines and "$" is only the very end, as in PostgreSQL. Inside
  parentheses the regex runs to the closing parenthesis, so ``id:(~AB CD)`` searches for
  "AB CD"; ``~"..."`` quotes one too.
- Arrays: ``tags:x`` means "tags contains x", a regex matches if any tag matches,
  ``tags:null`` means no tags. ``refIds.id:x`` / ``refIds.type:x`` match if any reference
  has that id / type.
- ``metadata.<path>`` reads the custom JSON metadata. An unquoted value there matches the JSON
  string, or the number when it looks like one, or the boolean for ``true``/``false``; a quoted
  value matches strings only. Comparisons are numeric with an unquoted number and
  string-wise (ISO dates sort correctly as strings) with a quoted value.

``sort`` is ``field[:dir],...``; only ``desc``/``DESC`` is descending. The default is
``createdAt`` descending, ``id`` is always the last tie-breaker, NULLs sort last either way,
and a ``metadata.<path>`` sorts numbers (numerically) before strings before anything else.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import math
import re
import sqlite3
import string
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute

from assetd.assets.models import Asset
from assetd.collections.models import CollectionAsset
from assetd.errors import QueryError

MAX_QUERY_LENGTH = 4096
MAX_TERMS = 64
MAX_GROUP_VALUES = 100
MAX_SORT_KEYS = 8
MAX_REGEX_LENGTH = 200
MAX_CURSOR_LENGTH = 4096
MAX_JSON_DEPTH = 8
JSON_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")

Dialect = Literal["sqlite", "postgresql"]
Op = Literal["eq", "gt", "ge", "lt", "le", "regex", "null", "exists"]


class FieldKind(enum.StrEnum):
    STRING = "string"
    NUMBER = "number"
    DATE = "date"
    ENUM = "enum"
    STRING_ARRAY = "string-array"
    REFIDS = "refids"
    JSON_OBJECT = "json-object"
    # A value inside a JSON column whose type is only known per row.
    JSON = "json"
    # Membership in a link table (collection:<id>): an EXISTS on its primary key.
    MEMBERSHIP = "membership"


_SCALAR_KINDS = frozenset({FieldKind.STRING, FieldKind.NUMBER, FieldKind.DATE, FieldKind.ENUM})


@dataclass(frozen=True, eq=False)
class Field:
    """What a public field name means in SQL."""

    kind: FieldKind
    column: InstrumentedAttribute[Any]
    # JSON: keys inside the column. REFIDS: the key compared in every array element.
    path: tuple[str, ...] = ()
    element_key: str | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = True
    # MEMBERSHIP: the link table's column that holds the asset id (``column`` is the group's).
    member: InstrumentedAttribute[Any] | None = None


def column_field(kind: FieldKind, column: InstrumentedAttribute[Any]) -> Field:
    """A field over one column (of any model); enum choices and nullability come from it."""
    sql_column = sa.inspect(column.class_).columns[column.key]
    choices: tuple[str, ...] = ()
    if kind is FieldKind.ENUM:
        choices = tuple(cast(sa.Enum, sql_column.type).enums)
    return Field(kind, column, choices=choices, nullable=bool(sql_column.nullable))


def metadata_path_field(path: tuple[str, ...]) -> Field:
    """``metadata.<path>``: a value inside the custom metadata JSON."""
    return Field(FieldKind.JSON, Asset.meta, path=path)


def facts_path_field(path: tuple[str, ...]) -> Field:
    """``facts.<path>``: a fact extracted from the current version (width, packageName, …)."""
    return Field(FieldKind.JSON, Asset.facts, path=path)


Resolver = Callable[[tuple[str, ...]], Field]


class FieldMap(Mapping[str, Field]):
    """Public field names, plus dynamic prefixes (``metadata.<path>``) resolved on demand.

    ``fields | {"details.bytes": fields["size"]}`` adds aliases and keeps the resolvers.
    """

    def __init__(
        self, fields: Mapping[str, Field], resolvers: Mapping[str, Resolver] | None = None
    ) -> None:
        self._fields = dict(fields)
        self._resolvers = dict(resolvers or {})

    def __getitem__(self, name: str) -> Field:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __or__(self, other: Mapping[str, Field]) -> FieldMap:
        added = other._resolvers if isinstance(other, FieldMap) else {}
        return FieldMap({**self._fields, **other}, {**self._resolvers, **added})

    def __ror__(self, other: Mapping[str, Field]) -> FieldMap:
        return FieldMap({**other, **self._fields}, self._resolvers)

    def with_resolver(self, prefix: str, resolver: Resolver) -> FieldMap:
        """Resolve ``<prefix>.<path>`` through ``resolver`` (e.g. ``facts``)."""
        return FieldMap(self._fields, {**self._resolvers, prefix: resolver})

    def resolve(self, name: str, *, offset: int = 0, source: str = "q") -> Field:
        """The field for ``name``; exact names win over prefixes. QueryError if unknown."""
        if name in self._fields:
            return self._fields[name]
        # Longest prefix first, so that "a.b.<path>" can override "a.<path>".
        for prefix in sorted(self._resolvers, key=len, reverse=True):
            if name.startswith(prefix + "."):
                path = tuple(name[len(prefix) + 1 :].split("."))
                if len(path) > MAX_JSON_DEPTH:
                    raise _error(
                        source, offset, f"{name!r} is nested deeper than {MAX_JSON_DEPTH} levels"
                    )
                for segment in path:
                    if not JSON_SEGMENT.fullmatch(segment):
                        raise _error(
                            source,
                            offset,
                            f"invalid path segment {segment!r} in {name!r}: expected 1 to 64 "
                            "letters, digits, '_' or '-'",
                        )
                return self._resolvers[prefix](path)
        raise _error(source, offset, f"unknown field {name!r}")


def _resolve(fields: Mapping[str, Field], name: str, offset: int, source: str) -> Field:
    if isinstance(fields, FieldMap):
        return fields.resolve(name, offset=offset, source=source)
    if name in fields:
        return fields[name]
    raise _error(source, offset, f"unknown field {name!r}")


NATIVE_FIELDS = FieldMap(
    {
        "id": column_field(FieldKind.STRING, Asset.id),
        "kind": column_field(FieldKind.ENUM, Asset.kind),
        "type": column_field(FieldKind.ENUM, Asset.type),
        "access": column_field(FieldKind.ENUM, Asset.access),
        "state": column_field(FieldKind.ENUM, Asset.state),
        "name": column_field(FieldKind.STRING, Asset.name),
        "description": column_field(FieldKind.STRING, Asset.description),
        "segmentId": column_field(FieldKind.STRING, Asset.segment_id),
        "url": column_field(FieldKind.STRING, Asset.url),
        "tags": Field(FieldKind.STRING_ARRAY, Asset.tags),
        "refIds": Field(FieldKind.REFIDS, Asset.ref_ids),
        "refIds.id": Field(FieldKind.REFIDS, Asset.ref_ids, element_key="id"),
        "refIds.type": Field(FieldKind.REFIDS, Asset.ref_ids, element_key="type"),
        "createdAt": column_field(FieldKind.DATE, Asset.created_at),
        "modifiedAt": column_field(FieldKind.DATE, Asset.modified_at),
        "trashedAt": column_field(FieldKind.DATE, Asset.trashed_at),
        "createdBy": column_field(FieldKind.STRING, Asset.created_by),
        "modifiedBy": column_field(FieldKind.STRING, Asset.modified_by),
        "revision": column_field(FieldKind.NUMBER, Asset.revision),
        "version": column_field(FieldKind.NUMBER, Asset.version_number),
        "size": column_field(FieldKind.NUMBER, Asset.size_bytes),
        "mimeType": column_field(FieldKind.STRING, Asset.mime_type),
        "filename": column_field(FieldKind.STRING, Asset.filename),
        "extension": column_field(FieldKind.STRING, Asset.extension),
        "sha256": column_field(FieldKind.STRING, Asset.sha256),
        "metadata": Field(FieldKind.JSON_OBJECT, Asset.meta),
        "metadataTemplateId": column_field(FieldKind.STRING, Asset.metadata_template_id),
        # The seed treats these as system fields, not custom metadata.
        "metadata.createdAt": column_field(FieldKind.DATE, Asset.created_at),
        "metadata.modifiedAt": column_field(FieldKind.DATE, Asset.modified_at),
        "metadata.version": column_field(FieldKind.NUMBER, Asset.revision),
        "facts": Field(FieldKind.JSON_OBJECT, Asset.facts),
        "collection": Field(
            FieldKind.MEMBERSHIP, CollectionAsset.collection_id, member=CollectionAsset.asset_id
        ),
        "collections": Field(
            FieldKind.MEMBERSHIP, CollectionAsset.collection_id, member=CollectionAsset.asset_id
        ),
    },
    {"metadata": metadata_path_field, "facts": facts_path_field},
)


def _error(source: str, offset: int, message: str) -> QueryError:
    return QueryError(
        f"Invalid {source} at offset {offset}: {message}", parameter=source, offset=offset
    )


# --- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Predicate:
    """One condition on a field; ``offset`` is where it starts in the query."""

    op: Op
    value: str = ""
    quoted: bool = False
    offset: int = dataclass_field(default=0, compare=False)

    def format(self, *, in_group: bool = False) -> str:
        if self.op in ("null", "exists"):
            return self.op
        if self.op == "regex":
            bare = (
                bool(self.value) and not in_group and not _has_any(self.value, _NOT_IN_BARE_REGEX)
            )
            return "~" + (self.value if bare else _quote(self.value))
        symbol = _OP_SYMBOLS.get(self.op, "")
        needs_quotes = self.quoted or not _is_bare_safe(self.value, symbol)
        return symbol + (_quote(self.value) if needs_quotes else self.value)


@dataclass(frozen=True)
class Term:
    """``field:value``; several predicates are all required when ``all_of`` else any."""

    field: str
    predicates: tuple[Predicate, ...]
    all_of: bool = False
    offset: int = dataclass_field(default=0, compare=False)

    def format(self) -> str:
        if len(self.predicates) == 1:
            return f"{self.field}:{self.predicates[0].format()}"
        separator = " AND " if self.all_of else ","
        inner = separator.join(p.format(in_group=True) for p in self.predicates)
        return f"{self.field}:({inner})"


_OP_SYMBOLS: dict[str, str] = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_FIELD_CHARS = frozenset(string.ascii_letters + string.digits + "_.-")
_NOT_IN_BARE = frozenset('()",')
_NOT_IN_BARE_REGEX = frozenset('"')
_KEYWORDS = frozenset({"null", "exists"})


def _has_any(value: str, chars: frozenset[str]) -> bool:
    return any(c in chars or c.isspace() for c in value)


def _is_bare_safe(value: str, symbol: str) -> bool:
    if not value or _has_any(value, _NOT_IN_BARE):
        return False
    if symbol:
        # ">" then "=5" would read back as ">=" then "5".
        return not (symbol in "<>" and value.startswith("="))
    return value[0] not in "~<>" and value not in _KEYWORDS


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_query(terms: Sequence[Term]) -> str:
    """The query text for ``terms``; parse_query(format_query(t)) == t."""
    return " ".join(term.format() for term in terms)


def parse_query(q: str) -> list[Term]:
    """Parse ``q`` into terms; QueryError says where and what was expected."""
    if "\x00" in q:
        raise _error("q", q.index("\x00"), "NUL characters are not allowed")
    return _Parser(q).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.end = len(text)

    def error(self, offset: int, message: str) -> QueryError:
        return _error("q", offset, message)

    def found(self) -> str:
        if self.pos >= self.end:
            return "the end of the query"
        return repr(self.text[self.pos])

    def skip_ws(self) -> bool:
        start = self.pos
        while self.pos < self.end and self.text[self.pos].isspace():
            self.pos += 1
        return self.pos > start

    def parse(self) -> list[Term]:
        if self.end > MAX_QUERY_LENGTH:
            raise self.error(MAX_QUERY_LENGTH, f"the query is longer than {MAX_QUERY_LENGTH}")
        terms: list[Term] = []
        self.skip_ws()
        while self.pos < self.end:
            if len(terms) == MAX_TERMS:
                raise self.error(self.pos, f"more than {MAX_TERMS} terms")
            terms.append(self.term())
            if self.pos < self.end and not self.text[self.pos].isspace():
                raise self.error(
                    self.pos, f"expected a space before the next term, found {self.found()}"
                )
            self.skip_ws()
        return terms

    def term(self) -> Term:
        start = self.pos
        while self.pos < self.end and self.text[self.pos] in _FIELD_CHARS:
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            if self.text[self.pos] == ")":
                raise self.error(self.pos, "unbalanced ')'")
            raise self.error(self.pos, f"expected a field name, found {self.found()}")
        if self.pos >= self.end or self.text[self.pos] != ":":
            raise self.error(self.pos, f"expected ':' after {name!r}, found {self.found()}")
        self.pos += 1
        if self.pos >= self.end or self.text[self.pos].isspace():
            raise self.error(self.pos, f"expected a value after '{name}:', found {self.found()}")
        if self.text[self.pos] == "(":
            predicates, all_of = self.group()
            return Term(name, predicates, all_of, offset=start)
        return Term(name, (self.predicate(group_start=None),), offset=start)

    def group(self) -> tuple[tuple[Predicate, ...], bool]:
        opening = self.pos
        self.pos += 1
        unbalanced = "unbalanced '(': expected ')' before the end of the query"
        predicates: list[Predicate] = []
        separator: str | None = None
        self.skip_ws()
        if self.pos >= self.end:
            raise self.error(opening, unbalanced)
        while True:
            if self.text[self.pos] == ")":
                raise self.error(self.pos, "expected a value before ')'")
            if len(predicates) == MAX_GROUP_VALUES:
                raise self.error(self.pos, f"more than {MAX_GROUP_VALUES} values in one group")
            predicates.append(self.predicate(group_start=opening))
            had_space = self.skip_ws()
            if self.pos >= self.end:
                raise self.error(opening, unbalanced)
            at = self.pos
            char = self.text[at]
            if char == ")":
                self.pos += 1
                return tuple(predicates), separator == "AND"
            if char == ",":
                this = ","
                self.pos += 1
            elif had_space and self._at_and():
                this = "AND"
                self.pos += 3
            else:
                raise self.error(at, f"expected ',', 'AND' or ')', found {char!r}")
            if separator is not None and this != separator:
                raise self.error(at, "cannot mix ',' and 'AND' in one group")
            separator = this
            self.skip_ws()
            if self.pos >= self.end:
                raise self.error(opening, unbalanced)

    def _at_and(self) -> bool:
        after = self.pos + 3
        return self.text.startswith("AND", self.pos) and (
            after >= self.end or self.text[after].isspace() or self.text[after] == ")"
        )

    def predicate(self, group_start: int | None) -> Predicate:
        start = self.pos
        char = self.text[start]
        if char == "~":
            self.pos += 1
            if self.pos < self.end and self.text[self.pos] == '"':
                value = self.quoted()
            elif group_start is not None:
                value = self.regex_to_closing_paren(group_start)
            else:
                value = self.bare(stop_at_space_only=True)
            if not value:
                raise self.error(start + 1, "expected a regular expression after '~'")
            return Predicate("regex", value, offset=start)
        if char in "<>":
            symbol = char
            self.pos += 1
            if self.pos < self.end and self.text[self.pos] == "=":
                symbol += "="
                self.pos += 1
            op = {">": "gt", ">=": "ge", "<": "lt", "<=": "le"}[symbol]
            value, quoted = self.operand(group_start is not None, f"after {symbol!r}")
            return Predicate(cast(Op, op), value, quoted, offset=start)
        value, quoted = self.operand(group_start is not None, "")
        if not quoted and value in _KEYWORDS:
            return Predicate(cast(Op, value), offset=start)
        return Predicate("eq", value, quoted, offset=start)

    def operand(self, in_group: bool, where: str) -> tuple[str, bool]:
        if self.pos < self.end and self.text[self.pos] == '"':
            return self.quoted(), True
        start = self.pos
        value = self.bare(stop_at_space_only=False, in_group=in_group)
        if not value:
            raise self.error(
                start, f"expected a value{' ' + where if where else ''}, found {self.found()}"
            )
        return value, False

    def bare(self, *, stop_at_space_only: bool, in_group: bool = False) -> str:
        start = self.pos
        while self.pos < self.end:
            char = self.text[self.pos]
            if char.isspace() or (in_group and char in ",)"):
                break
            if not stop_at_space_only and char in _NOT_IN_BARE:
                if char == ")":
                    raise self.error(self.pos, "unbalanced ')'")
                if char == "(" and self.pos == start:
                    raise self.error(self.pos, "nested parentheses are not supported")
                if char == ",":
                    raise self.error(
                        self.pos, "unexpected ','; put several values in parentheses: f:(a,b)"
                    )
                raise self.error(
                    self.pos, f"unexpected {char!r} inside a value; put the value in double quotes"
                )
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        opening = self.pos
        self.pos += 1
        chars: list[str] = []
        while self.pos < self.end:
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < self.end and self.text[self.pos + 1] in '"\\':
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(chars)
            chars.append(char)
            self.pos += 1
        raise self.error(opening, "unterminated quoted value: expected a closing '\"'")

    def regex_to_closing_paren(self, group_start: int) -> str:
        # The regex may hold spaces, commas and balanced parentheses; it ends at the ')' that
        # closes the group. Escapes and [...] classes are skipped so "\)" or "[)]" don't end it.
        start = index = self.pos
        depth = 0
        class_start: int | None = None
        while index < self.end:
            char = self.text[index]
            if char == "\\":
                index += 2
                continue
            if class_start is not None:
                if char == "]" and index != class_start:
                    class_start = None
                index += 1
                continue
            if char == "[":
                index += 1
                if index < self.end and self.text[index] == "^":
                    index += 1
                class_start = index
                continue
            if char == "(":
                depth += 1
            elif char == ")":
                if depth == 0:
                    self.pos = index
                    return self.text[start:index].rstrip()
                depth -= 1
            index += 1
        raise self.error(group_start, "unbalanced '(': expected ')' before the end of the query")


# --- values -------------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INT64 = 2**63 - 1


def parse_number(text: str, *, offset: int = 0, source: str = "q") -> int | float:
    """An integer when it fits in 64 bits, else a finite float."""
    if _NUMBER.fullmatch(text):
        if re.fullmatch(r"[+-]?\d+", text) and abs(int(text)) <= _INT64:
            return int(text)
        number = float(text)
        if math.isfinite(number):
            return number
    raise _error(source, offset, f"expected a number, found {text!r}")


def _float_or_none(text: str) -> float | None:
    try:
        return float(parse_number(text))
    except QueryError:
        return None


def parse_datetime(text: str, *, offset: int = 0, source: str = "q") -> datetime:
    """ISO-8601 date or date-time; ``Z`` and naive values are UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _error(
            source,
            offset,
            f'expected an ISO-8601 date such as "2021-05-18T07:27:27.455Z", found {text!r}',
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_REGEX_LETTER_ESCAPES = frozenset("dDsSwWtnr")
_REGEX_GROUPS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")
_REGEX_BOUND = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_PG_MAX_REPEAT = 255


def check_regex(pattern: str, *, offset: int = 0, source: str = "q") -> None:
    """Reject patterns that Python can't compile or that SQLite and PostgreSQL read differently."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise _error(source, offset, f"the regular expression is longer than {MAX_REGEX_LENGTH}")
    problem = _unportable_regex(pattern)
    if problem:
        raise _error(source, offset, f"unsupported regular expression: {problem}")
    with warnings.catch_warnings():
        # FutureWarning flags syntax ("[[", "--") whose meaning Python intends to change.
        warnings.simplefilter("error")
        try:
            re.compile(pattern)
            re.compile(_python_pattern(pattern))
        except (re.error, Warning) as exc:
            raise _error(source, offset, f"invalid regular expression: {exc}") from None


def _unportable_regex(pattern: str) -> str | None:
    # SQLite runs Python's re, PostgreSQL its own ARE engine: keep to the syntax both share.
    # Python's re also holds the GIL while it backtracks, so nested quantifiers such as
    # "(a+)+" (exponential time on a near miss) are refused outright.
    index = 4 if pattern.startswith("(?i)") else 0
    end = len(pattern)
    class_start: int | None = None
    after_quantifier = False
    # Per open group: does it contain a quantifier, is it a lookaround? [0] is the pattern.
    quantified = [False]
    lookaround = [False]
    after_quantified_group = after_lookaround = False
    while index < end:
        char = pattern[index]
        if class_start is not None:
            if char == "\\":
                index += 2
                continue
            if char == "[" and index + 1 < end and pattern[index + 1] in ":.=":
                return f"POSIX class at position {index}"
            if char == "]" and index != class_start:
                class_start = None
            index += 1
            continue
        quantifier_end = _quantifier_end(pattern, index)
        if quantifier_end is None:
            problem = _unportable_atom(pattern, index)
            if problem:
                return problem
        elif isinstance(quantifier_end, str):
            return quantifier_end
        elif after_quantifier:
            # Only a lazy "?" may follow a quantifier in both engines.
            if char != "?":
                return f"possessive or repeated quantifier at position {index}"
            after_quantifier = False
            index += 1
            continue
        else:
            if after_quantified_group:
                return f"nested quantifier at position {index}, like (a+)+"
            if after_lookaround:
                return f"quantified lookaround at position {index}"
            quantified[-1] = True
            after_quantifier = True
            after_quantified_group = after_lookaround = False
            index = quantifier_end
            continue
        after_quantifier = after_quantified_group = after_lookaround = False
        if char == "\\":
            index += 2
        elif char == "[":
            index += 1
            if index < end and pattern[index] == "^":
                index += 1
            class_start = index
        elif char == "(":
            prefix = next((g for g in _REGEX_GROUPS if pattern.startswith(g, index)), "(")
            quantified.append(False)
            lookaround.append(prefix not in ("(", "(?:"))
            index += len(prefix)
        elif char == ")" and len(quantified) > 1:
            inner = quantified.pop()
            quantified[-1] = quantified[-1] or inner
            after_quantified_group = inner
            after_lookaround = lookaround.pop()
            index += 1
        else:
            index += 1
    return None


def _quantifier_end(pattern: str, index: int) -> int | str | None:
    """Where the quantifier at ``index`` ends, None if there is none, or what is wrong with it."""
    char = pattern[index]
    if char in "*+?":
        return index + 1
    if char != "{":
        return None
    bound = _REGEX_BOUND.match(pattern, index)
    if bound is None:
        return f"'{{' at position {index} is not a {{m,n}} bound; escape it as '\\{{'"
    if any(int(n) > _PG_MAX_REPEAT for n in bound.groups() if n):
        return f"repeat count above {_PG_MAX_REPEAT} at position {index}"
    return bound.end()


def _unportable_atom(pattern: str, index: int) -> str | None:
    char = pattern[index]
    if char == "\\":
        if index + 1 >= len(pattern):
            return "trailing backslash"
        escaped = pattern[index + 1]
        if not (escaped in _REGEX_LETTER_ESCAPES or (escaped.isascii() and not escaped.isalnum())):
            return f"escape '\\{escaped}' at position {index}"
    elif pattern.startswith("(?", index) and not pattern.startswith(_REGEX_GROUPS, index):
        return f"group '{pattern[index : index + 3]}' at position {index}"
    return None


def _python_pattern(pattern: str) -> str:
    """``pattern`` as PostgreSQL reads it, for Python: "." matches newlines, "$" only the end."""
    flags = "(?s)"
    if pattern.startswith("(?i)"):
        flags, pattern = "(?is)", pattern[4:]
    out: list[str] = []
    index, end = 0, len(pattern)
    class_start: int | None = None
    while index < end:
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if class_start is not None:
            if char == "]" and index != class_start:
                class_start = None
        elif char == "[":
            class_start = index + 1
            if pattern.startswith("^", class_start):
                out.append("[^")
                index, class_start = index + 2, class_start + 1
                continue
        elif char == "$":
            # Python's "$" also matches before a final newline.
            char = "\\Z"
        out.append(char)
        index += 1
    return flags + "".join(out)


def _regex_match(text: Expr, pattern: str, dialect: Dialect) -> Condition:
    if dialect == "sqlite":
        pattern = _python_pattern(pattern)
    return text.regexp_match(sa.literal(pattern, sa.String))


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _sqlite_regexp(pattern: Any, value: Any) -> int | None:
    if not isinstance(pattern, str) or not isinstance(value, str):
        return None
    return 1 if _compiled(pattern).search(value) else 0


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Install ``REGEXP`` on a new SQLite connection; call from the engine's "connect" event."""
    if sqlite3.sqlite_version_info < (3, 30, 0):
        # NULLS LAST in ORDER BY needs 3.30.
        raise RuntimeError(f"SQLite >= 3.30 is required, found {sqlite3.sqlite_version}")
    dbapi_connection.create_function("regexp", 2, _sqlite_regexp, deterministic=True)


# --- SQL per dialect ------------------------------------------------------------------------

Expr = sa.ColumnElement[Any]
Condition = sa.ColumnElement[bool]


def _check_dialect(dialect: str) -> Dialect:
    if dialect not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported dialect {dialect!r}")
    return cast(Dialect, dialect)


def _sqlite_path(path: Sequence[str]) -> str:
    # Segments are validated ([A-Za-z0-9_-]); quoting makes "0" an object key, never an index.
    return "$" + "".join(f'."{segment}"' for segment in path)


@lru_cache(maxsize=1)
def _postgresql_dialect() -> sa.Dialect:
    return postgresql.dialect()  # type: ignore[no-untyped-call]


def _is_jsonb(column: Expr) -> bool:
    """Whether ``column`` is jsonb on PostgreSQL (the asset columns) rather than json."""
    return isinstance(column.type.dialect_impl(_postgresql_dialect()), postgresql.JSONB)


def _pg_json_function(name: str, is_jsonb: bool) -> Any:
    """``json_<name>`` or ``jsonb_<name>``: PostgreSQL has one set of functions per type."""
    return getattr(sa.func, ("jsonb_" if is_jsonb else "json_") + name)


class _Json:
    """Typed reads of one JSON value (column + path) that never raise on the wrong JSON type."""

    def __init__(self, column: Expr, path: Sequence[str], dialect: Dialect) -> None:
        self.dialect = dialect
        self.column = column
        self.path = tuple(path)
        self.type: Expr
        self.raw: Expr
        self.is_jsonb = False
        if dialect == "sqlite":
            self.sqlite_path = _sqlite_path(path)
            self.type = sa.func.json_type(column, self.sqlite_path, type_=sa.String)
            self.raw = sa.func.json_extract(column, self.sqlite_path, type_=sa.String)
        else:
            self.is_jsonb = _is_jsonb(column)
            node_type = postgresql.JSONB if self.is_jsonb else sa.JSON
            # "->" with a text key only looks up object keys, as SQLite does above; "#>" would
            # also index arrays with "0".
            node = column
            for segment in path:
                node = node.op("->", return_type=node_type)(sa.literal(segment, sa.String))
            self.node = node
            self.type = _pg_json_function("typeof", self.is_jsonb)(node, type_=sa.String)
            # A JSON scalar's text: "#>> '{}'" reads the value itself.
            self.raw = node.op("#>>", return_type=sa.String)(
                sa.literal([], postgresql.ARRAY(sa.Text))
            )

    def text(self) -> Expr:
        string_type = "text" if self.dialect == "sqlite" else "string"
        return sa.case((self.type == string_type, self.raw), else_=sa.null())

    def number(self) -> Expr:
        is_number = (
            self.type.in_(("integer", "real"))
            if self.dialect == "sqlite"
            else self.type == "number"
        )
        # CASE guarantees the cast only sees numbers (PostgreSQL would fail on "abc").
        return sa.case((is_number, sa.cast(self.raw, sa.Float)), else_=sa.null())

    def boolean(self, value: bool) -> Condition:
        if self.dialect == "sqlite":
            return self.type == ("true" if value else "false")
        if self.is_jsonb and self.path:
            return self._contains(value)
        return sa.and_(self.type == "boolean", self.raw == ("true" if value else "false"))

    def string_equals(self, value: str) -> Condition:
        """The value is the JSON string ``value`` (exact, case-sensitive)."""
        if self.is_jsonb and self.path:
            return self._contains(value)
        return self.text() == sa.literal(value, sa.String)

    def _contains(self, value: str | bool) -> Condition:
        # '{"a": {"b": "x"}}' @> '{"a": {"b": "x"}}' holds exactly when "a" is an object whose
        # "b" is that string (or boolean): containment compares strings byte for byte, never
        # matches an array against a scalar or an object below the top level, and the planner
        # estimates it from the column's statistics where it has no estimate for the CASE.
        probe: Any = value
        for segment in reversed(self.path):
            probe = {segment: probe}
        # Bound as JSON text: any driver connection can run the statement as compiled.
        document = sa.cast(sa.literal(json.dumps(probe), sa.Text), postgresql.JSONB)
        return sa.type_coerce(self.column, postgresql.JSONB).contains(document)

    def is_empty(self) -> Condition:
        if self.dialect == "sqlite":
            return sa.or_(
                self.type.is_(None),
                self.type == "null",
                sa.and_(self.type == "text", self.raw == ""),
                sa.and_(
                    self.type == "array",
                    sa.func.json_array_length(self.column, self.sqlite_path) == 0,
                ),
                sa.and_(self.type == "object", self.raw == "{}"),
            )
        normalized = sa.cast(sa.cast(self.node, postgresql.JSONB), sa.Text)
        return sa.or_(self.node.is_(None), normalized.in_(("null", '""', "[]", "{}")))


class _Array:
    """Conditions on a JSON array column: "some element ..." and "is empty"."""

    def __init__(self, column: Expr, dialect: Dialect) -> None:
        self.column = column
        self.dialect = dialect
        self.is_jsonb = dialect == "postgresql" and _is_jsonb(column)

    def _function(self, name: str) -> Any:
        return _pg_json_function(name, self.is_jsonb)

    def _elements(self) -> Any:
        if self.dialect == "sqlite":
            return sa.func.json_each(self.column).table_valued("value", "type").alias()
        # json_array_elements fails on a non-array; treat those as empty.
        safe = sa.case(
            (self._function("typeof")(self.column) == "array", self.column),
            else_=self._function("build_array")(),
        )
        return self._function("array_elements")(safe).table_valued("value").alias()

    def _any(self, condition: Callable[[Any], Condition]) -> Condition:
        elements = self._elements()
        subquery: sa.Select[Any] = sa.select(sa.literal_column("1")).select_from(elements)
        return subquery.where(condition(elements)).exists()

    def _element_text(self, elements: Any, key: str | None) -> tuple[Condition, Expr]:
        """(the element or its ``key`` is a string, that string)."""
        if self.dialect == "sqlite":
            if key is None:
                return elements.c.type == "text", elements.c.value
            path = _sqlite_path([key])
            value = elements.c.value
            return (
                sa.and_(
                    elements.c.type == "object",
                    sa.func.json_type(value, path, type_=sa.String) == "text",
                ),
                sa.func.json_extract(value, path, type_=sa.String),
            )
        node = elements.c.value
        if key is not None:
            node = node.op("->", return_type=sa.JSON)(sa.literal(key, sa.String))
        text = node.op("#>>", return_type=sa.String)(sa.literal([], postgresql.ARRAY(sa.Text)))
        return self._function("typeof")(node, type_=sa.String) == "string", text

    def contains(self, value: str, key: str | None) -> Condition:
        if self.dialect == "postgresql":
            # A containment test, no unnesting: '[{"id": "x", "type": "t"}]' @> '[{"id": "x"}]'.
            probe: Any = [value] if key is None else [{key: value}]
            if self.is_jsonb:
                return sa.type_coerce(self.column, postgresql.JSONB).contains(probe)
            return sa.cast(self.column, postgresql.JSONB).contains(probe)

        def condition(elements: Any) -> Condition:
            is_string, text = self._element_text(elements, key)
            return sa.and_(is_string, text == value)

        return self._any(condition)

    def any_matches(self, pattern: str, key: str | None) -> Condition:
        def condition(elements: Any) -> Condition:
            is_string, text = self._element_text(elements, key)
            return sa.and_(is_string, _regex_match(text, pattern, self.dialect))

        return self._any(condition)

    def any_non_empty(self, key: str | None) -> Condition:
        if key is None:
            return sa.not_(self.is_empty())

        def condition(elements: Any) -> Condition:
            is_string, text = self._element_text(elements, key)
            return sa.and_(is_string, text != "")

        return self._any(condition)

    def is_empty(self) -> Condition:
        if self.dialect == "sqlite":
            # json_array_length is 0 for a non-array and NULL only for SQL NULL.
            return sa.func.coalesce(sa.func.json_array_length(self.column), 0) == 0
        length = sa.case(
            (
                self._function("typeof")(self.column) == "array",
                self._function("array_length")(self.column),
            ),
            else_=0,
        )
        return length == 0


# --- compiling q ----------------------------------------------------------------------------


def compile_query(
    q: str | None,
    fields: Mapping[str, Field] = NATIVE_FIELDS,
    *,
    dialect: str,
    visible_groups: sa.Select[Any] | None = None,
) -> Condition | None:
    """The WHERE condition for ``q`` (None when ``q`` is empty); QueryError when malformed.

    visible_groups: the ids of the groups (collections) the caller may see; membership
    predicates consider no others. None: every group (an admin).
    """
    terms = parse_query(q or "")
    return compile_terms(terms, fields, dialect=dialect, visible_groups=visible_groups)


def compile_terms(
    terms: Sequence[Term],
    fields: Mapping[str, Field] = NATIVE_FIELDS,
    *,
    dialect: str,
    visible_groups: sa.Select[Any] | None = None,
) -> Condition | None:
    compiler = _Compiler(_check_dialect(dialect), visible_groups)
    conditions = [
        compiler.term(term, _resolve(fields, term.field, term.offset, "q")) for term in terms
    ]
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else sa.and_(*conditions)


def _scalar(field: Field) -> Expr:
    return cast(Expr, field.column)


class _Compiler:
    def __init__(self, dialect: Dialect, visible_groups: sa.Select[Any] | None = None) -> None:
        self.dialect = dialect
        self.visible_groups = visible_groups

    def term(self, term: Term, field: Field) -> Condition:
        predicates = term.predicates
        if (
            len(predicates) > 1
            and not term.all_of
            and field.kind in (FieldKind.STRING, FieldKind.ENUM)
            and all(p.op == "eq" for p in predicates)
        ):
            values = [self.string_value(term.field, field, p) for p in predicates]
            return _scalar(field).in_(values)
        conditions = [self.predicate(term.field, field, p) for p in predicates]
        if len(conditions) == 1:
            return conditions[0]
        return sa.and_(*conditions) if term.all_of else sa.or_(*conditions)

    def reject(self, name: str, field: Field, predicate: Predicate, hint: str = "") -> QueryError:
        what = {"regex": "a regular expression"}.get(
            predicate.op, f"'{_OP_SYMBOLS.get(predicate.op, predicate.op)}'"
        )
        message = f"{what} is not supported on the {field.kind.value} field {name!r}"
        return _error("q", predicate.offset, message + (f"; {hint}" if hint else ""))

    def string_value(self, name: str, field: Field, predicate: Predicate) -> str:
        if field.kind is not FieldKind.ENUM:
            return predicate.value
        by_folded = {choice.casefold(): choice for choice in field.choices}
        choice = by_folded.get(predicate.value.casefold())
        if choice is None:
            raise _error(
                "q",
                predicate.offset,
                f"invalid value {predicate.value!r} for {name!r}: expected one of "
                + ", ".join(field.choices),
            )
        return choice

    def predicate(self, name: str, field: Field, predicate: Predicate) -> Condition:
        if predicate.op == "regex":
            check_regex(predicate.value, offset=predicate.offset)
        kind = field.kind
        if kind in _SCALAR_KINDS:
            return self.scalar(name, field, predicate)
        if kind is FieldKind.JSON:
            return self.json(field, predicate)
        if kind in (FieldKind.STRING_ARRAY, FieldKind.REFIDS):
            return self.array(name, field, predicate)
        if kind is FieldKind.MEMBERSHIP:
            return self.membership(name, field, predicate)
        # JSON_OBJECT: only presence can be asked of a whole object.
        if predicate.op not in ("null", "exists"):
            raise self.reject(name, field, predicate, f"query a path such as '{name}.key'")
        empty = _Json(_scalar(field), (), self.dialect).is_empty()
        return empty if predicate.op == "null" else sa.not_(empty)

    def scalar(self, name: str, field: Field, predicate: Predicate) -> Condition:
        column = _scalar(field)
        kind = field.kind
        op = predicate.op
        if op in ("null", "exists"):
            if kind is FieldKind.STRING:
                empty: Condition = sa.or_(column.is_(None), column == "")
            else:
                empty = column.is_(None)
            return empty if op == "null" else sa.not_(empty)
        if op == "regex":
            if kind not in (FieldKind.STRING, FieldKind.ENUM):
                raise self.reject(name, field, predicate)
            # Bound as a plain string: an Enum-typed parameter would reject the pattern.
            text = sa.type_coerce(column, sa.String)
            return _regex_match(text, predicate.value, self.dialect)
        if kind in (FieldKind.STRING, FieldKind.ENUM):
            if op != "eq":
                raise self.reject(name, field, predicate, "only numbers and dates compare")
            return column == self.string_value(name, field, predicate)
        value: Any
        if kind is FieldKind.NUMBER:
            number = parse_number(predicate.value, offset=predicate.offset)
            # Typed by the value: a float bound as the column's integer type would be rounded.
            value = sa.literal(number, sa.BigInteger if isinstance(number, int) else sa.Float)
        else:
            value = parse_datetime(predicate.value, offset=predicate.offset)
        return _compare(column, op, value)

    def json(self, field: Field, predicate: Predicate) -> Condition:
        target = _Json(_scalar(field), field.path, self.dialect)
        op = predicate.op
        if op in ("null", "exists"):
            empty = target.is_empty()
            return empty if op == "null" else sa.not_(empty)
        if op == "regex":
            return _regex_match(target.text(), predicate.value, self.dialect)
        value = predicate.value
        if predicate.quoted:
            if op == "eq":
                return target.string_equals(value)
            return _compare(target.text(), op, sa.literal(value, sa.String))
        is_number = bool(_NUMBER.fullmatch(value))
        if op == "eq":
            alternatives = [target.string_equals(value)]
            number = _float_or_none(value) if is_number else None
            if number is not None:
                alternatives.append(target.number() == sa.literal(number, sa.Float))
            if value in ("true", "false"):
                alternatives.append(target.boolean(value == "true"))
            return sa.or_(*alternatives)
        if not is_number:
            raise _error(
                "q",
                predicate.offset,
                f"expected a number, or a quoted value to compare as a string, found {value!r}",
            )
        number = float(parse_number(value, offset=predicate.offset))
        return _compare(target.number(), op, sa.literal(number, sa.Float))

    def membership(self, name: str, field: Field, predicate: Predicate) -> Condition:
        """``collection:<id>``: in that group; ``collection:null``/``exists``: in none/any."""
        assert field.member is not None
        links = sa.select(sa.literal(1)).where(field.member == Asset.id)
        if self.visible_groups is not None:
            # A group hidden from the caller is not there for it: an asset it may see must
            # not give away that it sits in one (nor in "some" group, or in "none").
            links = links.where(field.column.in_(self.visible_groups))
        if predicate.op in ("null", "exists"):
            # Probes the link table's (tenant_id, asset_id) index once per asset row.
            in_any = links.where(field.column.table.c.tenant_id == Asset.tenant_id).exists()
            return sa.not_(in_any) if predicate.op == "null" else in_any
        if predicate.op != "eq":
            raise self.reject(name, field, predicate, f"use {name}:<id>")
        # A primary-key probe (group id, asset id). Groups of another tenant hold none of
        # this tenant's assets, so a foreign id simply matches nothing.
        return links.where(field.column == predicate.value).exists()

    def array(self, name: str, field: Field, predicate: Predicate) -> Condition:
        array = _Array(_scalar(field), self.dialect)
        key = field.element_key
        op = predicate.op
        if op in ("null", "exists"):
            exists = array.any_non_empty(key)
            return sa.not_(exists) if op == "null" else exists
        if field.kind is FieldKind.REFIDS and key is None:
            raise self.reject(name, field, predicate, f"use '{name}.id' or '{name}.type'")
        if op == "regex":
            return array.any_matches(predicate.value, key)
        if op != "eq":
            raise self.reject(name, field, predicate, "arrays only test membership")
        return array.contains(predicate.value, key)


def _compare(left: Expr, op: Op, right: Any) -> Condition:
    if op == "eq":
        return cast(Condition, left == right)
    if op == "gt":
        return cast(Condition, left > right)
    if op == "ge":
        return cast(Condition, left >= right)
    if op == "lt":
        return cast(Condition, left < right)
    if op == "le":
        return cast(Condition, left <= right)
    raise AssertionError(op)


# --- sorting and cursors ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SortKey:
    """One ORDER BY expression, and how to read its value from a loaded row (an Asset, …)."""

    name: str
    descending: bool
    expr: Expr
    kind: FieldKind
    nullable: bool
    read: Callable[[Any], Any]
    choices: tuple[str, ...] = ()

    def order_by(self) -> sa.UnaryExpression[Any]:
        ordered = self.expr.desc() if self.descending else self.expr.asc()
        # SQLite puts NULLs first ascending, PostgreSQL last: say it. Skipped on NOT NULL
        # columns so that PostgreSQL can still walk an ASC index backwards for DESC.
        return ordered.nulls_last() if self.nullable else ordered


def _column_sort_key(name: str, field: Field, descending: bool) -> SortKey:
    attribute = field.column.key
    return SortKey(
        name,
        descending,
        _scalar(field),
        field.kind,
        field.nullable,
        read=lambda asset: getattr(asset, attribute),
        choices=field.choices,
    )


def _read_json(asset: Any, attribute: str, path: tuple[str, ...]) -> Any:
    value: Any = getattr(asset, attribute)
    for segment in path:
        if not isinstance(value, dict):
            return None
        value = value.get(segment)
    return value


def _json_sort_keys(name: str, field: Field, descending: bool, dialect: Dialect) -> list[SortKey]:
    # Two keys give one order on both databases for mixed JSON types: numbers by value, then
    # strings, then everything else (missing, null, booleans, objects, arrays).
    target = _Json(_scalar(field), field.path, dialect)
    attribute = field.column.key
    path = field.path

    def read_number(asset: Any) -> float | None:
        value = _read_json(asset, attribute, path)
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if is_number else None

    def read_string(asset: Any) -> str | None:
        value = _read_json(asset, attribute, path)
        return value if isinstance(value, str) else None

    return [
        SortKey(f"{name}#number", descending, target.number(), FieldKind.NUMBER, True, read_number),
        SortKey(f"{name}#string", descending, target.text(), FieldKind.STRING, True, read_string),
    ]


def _parse_sort(sort: str) -> list[tuple[str, bool, int]]:
    if len(sort) > MAX_QUERY_LENGTH:
        raise _error("sort", MAX_QUERY_LENGTH, f"longer than {MAX_QUERY_LENGTH}")
    specs: list[tuple[str, bool, int]] = []
    offset = 0
    for part in sort.split(","):
        start = offset + len(part) - len(part.lstrip())
        offset += len(part) + 1
        name, _, direction = part.strip().partition(":")
        name = name.strip()
        if not name or any(c not in _FIELD_CHARS for c in name):
            raise _error("sort", start, f"expected a field name, found {part.strip()!r}")
        # The seed: descending only for exactly "desc" or "DESC", ascending otherwise.
        specs.append((name, direction.strip() in ("desc", "DESC"), start))
    if len(specs) > MAX_SORT_KEYS:
        raise _error("sort", specs[MAX_SORT_KEYS][2], f"more than {MAX_SORT_KEYS} sort fields")
    return specs


_ID_FIELD = column_field(FieldKind.STRING, Asset.id)
_CREATED_AT_FIELD = column_field(FieldKind.DATE, Asset.created_at)


def compile_sort(
    sort: str | None,
    fields: Mapping[str, Field] = NATIVE_FIELDS,
    *,
    dialect: str,
    id_field: Field = _ID_FIELD,
    created_at_field: Field = _CREATED_AT_FIELD,
) -> list[SortKey]:
    """Sort keys for ``sort`` (default: createdAt desc), ending with ``id`` as the tie-breaker.

    ``id_field`` and ``created_at_field`` name those columns in another table (events).
    """
    checked = _check_dialect(dialect)
    if sort and sort.strip():
        specs = [
            (name, _resolve(fields, name, offset, "sort"), descending, offset)
            for name, descending, offset in _parse_sort(sort)
        ]
    else:
        specs = [("createdAt", created_at_field, True, 0)]
    keys: list[SortKey] = []
    seen: set[str] = set()
    for name, field, descending, offset in specs:
        if name in seen:
            raise _error("sort", offset, f"{name!r} is listed twice")
        seen.add(name)
        if field.kind in _SCALAR_KINDS:
            keys.append(_column_sort_key(name, field, descending))
            if field.column is id_field.column:
                # Rows are unique by id: keys after it would never be consulted.
                return keys
        elif field.kind is FieldKind.JSON:
            keys.extend(_json_sort_keys(name, field, descending, checked))
        else:
            raise _error("sort", offset, f"cannot sort by the {field.kind.value} field {name!r}")
    keys.append(_column_sort_key("id", id_field, keys[-1].descending))
    return keys


def order_by(sort_keys: Sequence[SortKey]) -> list[sa.UnaryExpression[Any]]:
    """The ORDER BY clauses for ``sort_keys``."""
    return [key.order_by() for key in sort_keys]


def sort_values(sort_keys: Sequence[SortKey], asset: Any) -> list[Any]:
    """The values of ``sort_keys`` in a loaded row, as encode_cursor() takes them."""
    return [key.read(asset) for key in sort_keys]


def _fingerprint(sort_keys: Sequence[SortKey]) -> str:
    spec = ",".join(
        f"{k.name}:{'desc' if k.descending else 'asc'}:{k.kind.value}" for k in sort_keys
    )
    return hashlib.sha256(spec.encode()).hexdigest()[:8]


def _checksum(fingerprint: str, values: list[Any]) -> str:
    # Catches edited or truncated cursors; not a signature (tenant scoping is the boundary).
    data = json.dumps([fingerprint, values], separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:12]


def _encode_value(key: SortKey, value: Any) -> Any:
    if value is None:
        return None
    if key.kind is FieldKind.DATE:
        if not isinstance(value, datetime):
            raise TypeError(f"sort key {key.name!r} needs a datetime, got {value!r}")
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    if key.kind is FieldKind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"sort key {key.name!r} needs a number, got {value!r}")
        return value
    if isinstance(value, enum.Enum):
        value = value.value
    if not isinstance(value, str):
        raise TypeError(f"sort key {key.name!r} needs a string, got {value!r}")
    return value


def encode_cursor(sort_keys: Sequence[SortKey], row_values: Sequence[Any]) -> str:
    """An opaque cursor that points just after the row whose sort values are ``row_values``."""
    if len(row_values) != len(sort_keys):
        raise ValueError(f"{len(sort_keys)} sort keys but {len(row_values)} values")
    values = [_encode_value(k, v) for k, v in zip(sort_keys, row_values, strict=True)]
    fingerprint = _fingerprint(sort_keys)
    payload = [fingerprint, values, _checksum(fingerprint, values)]
    data = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _cursor_error(message: str) -> QueryError:
    return QueryError(f"Invalid cursor: {message}", parameter="cursor")


def decode_cursor(sort_keys: Sequence[SortKey], cursor: str) -> list[Any]:
    """The row values in ``cursor``; QueryError if it is garbage or made for another sort."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise _cursor_error("too long")
    try:
        data = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        payload = json.loads(data)
    except (binascii.Error, ValueError):
        raise _cursor_error("not a cursor from this API") from None
    if not (
        isinstance(payload, list)
        and len(payload) == 3
        and isinstance(payload[0], str)
        and isinstance(payload[1], list)
        and payload[2] == _checksum(payload[0], payload[1])
    ):
        raise _cursor_error("not a cursor from this API")
    fingerprint, raw_values, _ = payload
    if fingerprint != _fingerprint(sort_keys) or len(raw_values) != len(sort_keys):
        raise _cursor_error("it was made for another sort order; start again without it")
    return [_decode_value(k, v) for k, v in zip(sort_keys, raw_values, strict=True)]


def _decode_value(key: SortKey, raw: Any) -> Any:
    if raw is None:
        if key.nullable:
            return None
    elif key.kind is FieldKind.DATE:
        if isinstance(raw, str):
            try:
                return parse_datetime(raw, source="cursor")
            except QueryError:
                pass
    elif key.kind is FieldKind.NUMBER:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return raw
    elif isinstance(raw, str) and (not key.choices or raw in key.choices):
        return raw
    raise _cursor_error(f"bad value for {key.name!r}")


def cursor_condition(sort_keys: Sequence[SortKey], cursor: str) -> Condition:
    """Rows strictly after the cursor's row in the order of ``sort_keys`` (NULLs last)."""
    values = decode_cursor(sort_keys, cursor)
    directions = {key.descending for key in sort_keys}
    if len(directions) == 1 and not any(key.nullable for key in sort_keys):
        # One direction, no NULLs: a row-value comparison, which an index can seek to.
        row = sa.tuple_(*(key.expr for key in sort_keys))
        bound = sa.tuple_(
            *(sa.literal(v, key.expr.type) for key, v in zip(sort_keys, values, strict=True))
        )
        return row < bound if sort_keys[0].descending else row > bound
    # The general form: equal on the first i keys and after on key i, for some i.
    alternatives: list[Condition] = []
    equal: list[Condition] = []
    for key, value in zip(sort_keys, values, strict=True):
        bound_value = sa.literal(value, key.expr.type) if value is not None else None
        if bound_value is not None:
            after = key.expr < bound_value if key.descending else key.expr > bound_value
            if key.nullable:
                after = sa.or_(after, key.expr.is_(None))
            alternatives.append(sa.and_(*equal, after))
            equal.append(key.expr == bound_value)
        else:
            # Under NULLs last only other NULLs follow a NULL, and they tie on this key.
            equal.append(key.expr.is_(None))
    return sa.or_(*alternatives) if alternatives else sa.false()
