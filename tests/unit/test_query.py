"""The query language: parsing, errors, compiling without a database, sort specs and cursors."""

from __future__ import annotations

import base64
import re
import sqlite3
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from assetd.assets.models import Asset, AssetType
from assetd.assets.query import (
    MAX_REGEX_LENGTH,
    NATIVE_FIELDS,
    Field,
    FieldKind,
    FieldMap,
    Predicate,
    Term,
    check_regex,
    compile_query,
    compile_sort,
    cursor_condition,
    decode_cursor,
    encode_cursor,
    format_query,
    parse_datetime,
    parse_number,
    parse_query,
    register_sqlite_functions,
    sort_values,
)
from assetd.errors import QueryError

DIALECTS = ["sqlite", "postgresql"]
POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]  # renders; needs no driver
SEED_FIELDS = NATIVE_FIELDS | {
    "details.filename": NATIVE_FIELDS["filename"],
    "details.mimeType": NATIVE_FIELDS["mimeType"],
    "details.bytes": NATIVE_FIELDS["size"],
}


def eq(value: str, *, quoted: bool = False) -> Predicate:
    return Predicate("eq", value, quoted)


def sql(condition: sa.ColumnElement[bool] | None, dialect: str) -> str:
    assert condition is not None
    compiler = sqlite.dialect() if dialect == "sqlite" else POSTGRES
    return str(sa.select(Asset.id).where(condition).compile(dialect=compiler))


def error_offset(excinfo: pytest.ExceptionInfo[QueryError]) -> int:
    match = re.search(r"at offset (\d+)", excinfo.value.detail)
    assert match, excinfo.value.detail
    assert excinfo.value.extra["offset"] == int(match.group(1))
    return int(match.group(1))


class TestParseSeedExamples:
    """Every example from seed 001's "q" section, literally."""

    def test_plain_value(self) -> None:
        assert parse_query("access:PUBLIC") == [Term("access", (eq("PUBLIC"),))]

    @pytest.mark.parametrize(
        ("q", "op"),
        [
            ("details.bytes:200", "eq"),
            ("details.bytes:>200", "gt"),
            ("details.bytes:<200", "lt"),
            ("details.bytes:>=200", "ge"),
            ("details.bytes:<=200", "le"),
        ],
    )
    def test_number_comparisons(self, q: str, op: str) -> None:
        [term] = parse_query(q)
        assert term.field == "details.bytes"
        assert term.predicates == (Predicate(op, "200"),)  # type: ignore[arg-type]

    def test_range(self) -> None:
        assert parse_query("details.bytes:(>=100 AND <=200)") == [
            Term("details.bytes", (Predicate("ge", "100"), Predicate("le", "200")), all_of=True)
        ]

    def test_date_range(self) -> None:
        q = 'metadata.createdAt:(>="2021-05-18T07:27:27.455Z" AND <"2021-05-20T07:27:27.455Z")'
        assert parse_query(q) == [
            Term(
                "metadata.createdAt",
                (
                    Predicate("ge", "2021-05-18T07:27:27.455Z", quoted=True),
                    Predicate("lt", "2021-05-20T07:27:27.455Z", quoted=True),
                ),
                all_of=True,
            )
        ]

    def test_null_and_exists(self) -> None:
        assert parse_query("details.filename:null details:exists") == [
            Term("details.filename", (Predicate("null"),)),
            Term("details", (Predicate("exists"),)),
        ]

    def test_several_values(self) -> None:
        q = "id:(5c3325baa9812100098ff48f,5c3325d1a9812100098ff494)"
        assert parse_query(q) == [
            Term("id", (eq("5c3325baa9812100098ff48f"), eq("5c3325d1a9812100098ff494")))
        ]

    def test_several_fields(self) -> None:
        assert parse_query("id:5c3325baa9812100098ff48f access:PUBLIC") == [
            Term("id", (eq("5c3325baa9812100098ff48f"),)),
            Term("access", (eq("PUBLIC"),)),
        ]

    def test_regex(self) -> None:
        assert parse_query("id:~ABCD12") == [Term("id", (Predicate("regex", "ABCD12"),))]

    def test_regex_with_space_in_parentheses(self) -> None:
        assert parse_query("id:(~AB CD)") == [Term("id", (Predicate("regex", "AB CD"),))]

    def test_example_placeholder_is_a_literal(self) -> None:
        assert parse_query("name:{name}") == [Term("name", (eq("{name}"),))]

    def test_every_seed_example_compiles(self) -> None:
        examples = [
            "access:PUBLIC",
            "details.bytes:200",
            "details.bytes:(>=100 AND <=200)",
            'metadata.createdAt:(>="2021-05-18T07:27:27.455Z" AND <"2021-05-20T07:27:27.455Z")',
            "details.filename:null",
            "id:(5c3325baa9812100098ff48f,5c3325d1a9812100098ff494)",
            "id:5c3325baa9812100098ff48f access:PUBLIC",
            "id:~ABCD12",
            "id:(~AB CD)",
        ]
        for q in examples:
            for dialect in DIALECTS:
                assert compile_query(q, SEED_FIELDS, dialect=dialect) is not None


class TestParseForms:
    def test_empty_query_has_no_terms(self) -> None:
        assert parse_query("") == []
        assert parse_query("  \t ") == []
        assert compile_query(None, dialect="sqlite") is None
        assert compile_query("   ", dialect="postgresql") is None

    def test_whitespace_between_terms_is_free(self) -> None:
        assert parse_query("  a:1 \t\n b:2  ") == [Term("a", (eq("1"),)), Term("b", (eq("2"),))]

    def test_quoted_value_keeps_spaces(self) -> None:
        assert parse_query('name:"summer sale 2024"') == [
            Term("name", (eq("summer sale 2024", quoted=True),))
        ]

    def test_quoted_value_unescapes_quotes_and_backslashes(self) -> None:
        [term] = parse_query(r'name:"say \"hi\" \\ now \d"')
        assert term.predicates[0].value == r'say "hi" \ now \d'

    def test_quoted_keyword_is_a_literal(self) -> None:
        assert parse_query('name:"null"') == [Term("name", (eq("null", quoted=True),))]

    def test_unquoted_date_and_comparison_with_quoted_date(self) -> None:
        assert parse_query('createdAt:>"2021-05-18T07:27:27.455Z" modifiedAt:<=2021-05-18') == [
            Term("createdAt", (Predicate("gt", "2021-05-18T07:27:27.455Z", quoted=True),)),
            Term("modifiedAt", (Predicate("le", "2021-05-18"),)),
        ]

    def test_group_tolerates_spaces_around_separators(self) -> None:
        assert parse_query("type:( image , video )") == [Term("type", (eq("image"), eq("video")))]

    def test_group_mixes_value_forms(self) -> None:
        [term] = parse_query('name:(null, "a b", ~^x)')
        assert term.predicates == (
            Predicate("null"),
            eq("a b", quoted=True),
            Predicate("regex", "^x"),
        )

    def test_regex_in_group_keeps_balanced_parentheses_commas_and_classes(self) -> None:
        [term] = parse_query(r"name:(~(a|b){1,2}[)] \) x)")
        assert term.predicates == (Predicate("regex", r"(a|b){1,2}[)] \) x"),)

    def test_regex_outside_group_runs_to_whitespace(self) -> None:
        assert parse_query("name:~(a|b)c, tags:x")[0].predicates == (Predicate("regex", "(a|b)c,"),)

    def test_quoted_regex(self) -> None:
        [term] = parse_query(r'name:~"a \"b\" \d"')
        assert term.predicates == (Predicate("regex", r'a "b" \d'),)

    def test_offsets_point_at_terms_and_predicates(self) -> None:
        terms = parse_query("a:1  bb:(x, >=2)")
        assert [t.offset for t in terms] == [0, 5]
        assert [p.offset for p in terms[1].predicates] == [9, 12]

    def test_format_round_trips_the_seed_examples(self) -> None:
        q = 'a:PUBLIC b:(>=100 AND <=200) c:(~AB CD) d:"x \\"y\\"" e:null f:(1,2)'
        assert parse_query(format_query(parse_query(q))) == parse_query(q)


class TestParseErrors:
    @pytest.mark.parametrize(
        ("q", "offset", "expected"),
        [
            ("access", 6, "expected ':' after 'access'"),
            ("access:", 7, "expected a value after 'access:'"),
            ("access: PUBLIC", 7, "expected a value"),
            (":PUBLIC", 0, "expected a field name"),
            ("a:1 )", 4, "unbalanced ')'"),
            ("a:1)", 3, "unbalanced ')'"),
            ("size:(>=1 AND <=2", 5, "unbalanced '('"),
            ("id:(~AB CD", 3, "unbalanced '('"),
            ("size:()", 6, "expected a value before ')'"),
            ("size:(1,)", 8, "expected a value before ')'"),
            ("size:(1 2)", 8, "expected ',', 'AND' or ')'"),
            ("size:(>=1 AND <=2, 3)", 17, "cannot mix"),
            ("size:((1))", 6, "nested parentheses"),
            ('name:"abc', 5, "unterminated quoted value"),
            ('name:"a"b', 8, "expected a space before the next term"),
            ("name:a,b", 6, "put several values in parentheses"),
            ('name:ab"c', 7, "put the value in double quotes"),
            ("size:>", 6, "expected a value after '>'"),
            ("size:>=)", 7, "unbalanced ')'"),
            ("name:~", 6, "expected a regular expression"),
            ("a:(x AND)", 8, "expected a value before ')'"),
        ],
    )
    def test_malformed_query_says_where_and_what(self, q: str, offset: int, expected: str) -> None:
        with pytest.raises(QueryError, match=re.escape(expected)) as excinfo:
            parse_query(q)
        assert error_offset(excinfo) == offset
        assert excinfo.value.extra["parameter"] == "q"

    def test_too_long_query(self) -> None:
        with pytest.raises(QueryError, match="longer than"):
            parse_query("a:" + "x" * 5000)

    def test_too_many_values_in_a_group(self) -> None:
        with pytest.raises(QueryError, match="more than 100 values"):
            parse_query("size:(" + ",".join(["1"] * 101) + ")")

    def test_too_many_terms(self) -> None:
        with pytest.raises(QueryError, match="more than 64 terms"):
            parse_query(" ".join(["a:1"] * 65))


class TestCompileErrors:
    @pytest.mark.parametrize(
        ("q", "offset", "expected"),
        [
            ("colour:red", 0, "unknown field 'colour'"),
            ("access:PUBLIC nope:1", 14, "unknown field 'nope'"),
            ("name:>abc", 5, "'>' is not supported on the string field 'name'"),
            ("size:~12", 5, "a regular expression is not supported on the number field 'size'"),
            ("size:abc", 5, "expected a number, found 'abc'"),
            ("size:(>=1 AND <=1e999)", 14, "expected a number"),
            ("createdAt:>yesterday", 10, "expected an ISO-8601 date"),
            ('createdAt:"2021-13-01"', 10, "expected an ISO-8601 date"),
            ("access:secret", 7, "expected one of PUBLIC, PRIVATE"),
            ("type:(image,pdf)", 12, "expected one of image, document, video"),
            ("tags:>a", 5, "arrays only test membership"),
            ("refIds:p1", 7, "use 'refIds.id' or 'refIds.type'"),
            ("metadata:red", 9, "query a path such as 'metadata.key'"),
            ("metadata.n:>abc", 11, "expected a number, or a quoted value"),
            ("metadata.a..b:1", 0, "invalid path segment ''"),
            ("metadata.a$b:1", 10, "expected ':' after 'metadata.a', found '$'"),
            ("metadata.a.b.c.d.e.f.g.h.i:1", 0, "nested deeper than 8"),
            ("name:~(", 5, "invalid regular expression"),
            ("name:~a**", 5, "unsupported regular expression"),
        ],
    )
    def test_invalid_term_says_where_and_what(self, q: str, offset: int, expected: str) -> None:
        for dialect in DIALECTS:
            with pytest.raises(QueryError, match=re.escape(expected)) as excinfo:
                compile_query(q, dialect=dialect)
            assert error_offset(excinfo) == offset

    def test_long_segment_is_rejected(self) -> None:
        with pytest.raises(QueryError, match="invalid path segment"):
            compile_query(f"metadata.{'x' * 65}:1", dialect="sqlite")

    def test_unknown_dialect_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="unsupported dialect"):
            compile_query("a:1", dialect="mysql")


class TestRegexCheck:
    @pytest.mark.parametrize(
        "pattern",
        [
            "AB CD",
            "^img-\\d{2,3}$",
            "(?i)summer",
            "colou?r",
            "a+?b",
            "[\\w.-]+@x\\.com",
            "[]a]",
            "(?:a|b)(?=c)(?!d)",
            "(?<=a)b",
            "x{3}",
            "\\(\\)\\[\\]\\{\\}",
            "(ab)+c*",
            "(?:ab)+(a|b)*",
            "[(+]+",
        ],
    )
    def test_portable_patterns_pass(self, pattern: str) -> None:
        check_regex(pattern)

    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("\\bword", "escape '\\b'"),
            ("(a)\\1", "escape '\\1'"),
            ("(?P<x>a)", "group '(?P'"),
            ("a(?i)b", "group '(?i'"),
            ("(?>a)", "group '(?>'"),
            ("a*+", "possessive"),
            ("a{,3}", "is not a {m,n} bound"),
            ("a{1000}", "repeat count above 255"),
            ("[[:alpha:]]", "POSIX class"),
            ("[", "invalid regular expression"),
            ("a\\", "trailing backslash"),
            ("(a+)+$", "nested quantifier"),
            ("(a*)*", "nested quantifier"),
            ("((ab)*c)+", "nested quantifier"),
            ("(?:x{2}){3}", "nested quantifier"),
            ("a{2}{3}", "repeated quantifier"),
            ("(?=a)+", "quantified lookaround"),
            ("b(?<!a){2}", "quantified lookaround"),
        ],
    )
    def test_unportable_or_invalid_patterns_fail(self, pattern: str, expected: str) -> None:
        with pytest.raises(QueryError, match=re.escape(expected)):
            check_regex(pattern)

    def test_nested_set_warning_is_an_error_not_a_warning(self) -> None:
        with pytest.raises(QueryError, match="invalid regular expression"):
            check_regex("[a--b]")

    def test_length_limit(self) -> None:
        check_regex("a" * MAX_REGEX_LENGTH)
        with pytest.raises(QueryError, match="longer than 200"):
            check_regex("a" * (MAX_REGEX_LENGTH + 1))


class TestValues:
    @pytest.mark.parametrize(
        ("text", "value"),
        [("200", 200), ("-3", -3), ("2.5", 2.5), (".5", 0.5), ("1e3", 1e3), ("1" + "0" * 29, 1e29)],
    )
    def test_numbers(self, text: str, value: float) -> None:
        assert parse_number(text) == value

    @pytest.mark.parametrize("text", ["abc", "", "1.2.3", "nan", "inf", "1e400", "0x10"])
    def test_bad_numbers(self, text: str) -> None:
        with pytest.raises(QueryError, match="expected a number"):
            parse_number(text)

    def test_dates_are_utc(self) -> None:
        assert parse_datetime("2021-05-18T07:27:27.455Z") == datetime(
            2021, 5, 18, 7, 27, 27, 455000, tzinfo=UTC
        )
        assert parse_datetime("2021-05-18") == datetime(2021, 5, 18, tzinfo=UTC)
        assert parse_datetime("2021-05-18T09:00:00+02:00") == datetime(2021, 5, 18, 7, tzinfo=UTC)


class TestCompileShapes:
    """How terms become SQL; the exact rows are checked in tests/integration/test_query_sql.py."""

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_enum_values_take_any_case(self, dialect: str) -> None:
        assert "assets.access" in sql(compile_query("access:public", dialect=dialect), dialect)

    def test_several_values_become_in(self) -> None:
        assert "IN" in sql(compile_query("id:(a,b)", dialect="sqlite"), "sqlite")

    def test_regex_uses_regexp_on_sqlite_and_tilde_on_postgres(self) -> None:
        assert "REGEXP" in sql(compile_query("name:~a", dialect="sqlite"), "sqlite")
        assert "~" in sql(compile_query("name:~a", dialect="postgresql"), "postgresql")

    def test_arrays_use_json_each_on_sqlite_and_containment_on_postgres(self) -> None:
        assert "json_each(assets.tags)" in sql(compile_query("tags:a", dialect="sqlite"), "sqlite")
        assert "@>" in sql(compile_query("tags:a", dialect="postgresql"), "postgresql")

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_user_text_never_reaches_the_sql_text(self, dialect: str) -> None:
        q = 'metadata.x-y:"\'; DROP TABLE assets; --" name:~"\'" tags:"a\'b"'
        text = sql(compile_query(q, dialect=dialect), dialect)
        assert "DROP" not in text
        assert "x-y" not in text
        assert "a'b" not in text

    def test_metadata_system_fields_map_to_columns(self) -> None:
        text = sql(compile_query('metadata.createdAt:>"2021-01-01"', dialect="sqlite"), "sqlite")
        assert "assets.created_at >" in text
        assert "metadata" not in text

    def test_aliases_keep_the_metadata_resolver(self) -> None:
        assert isinstance(SEED_FIELDS, FieldMap)
        assert SEED_FIELDS.resolve("metadata.color").kind is FieldKind.JSON
        assert SEED_FIELDS.resolve("details.bytes") is NATIVE_FIELDS["size"]

    def test_field_map_merges_from_either_side(self) -> None:
        left = {"bytes": NATIVE_FIELDS["size"]} | NATIVE_FIELDS
        assert isinstance(left, FieldMap)
        assert len(left) == len(NATIVE_FIELDS) + 1
        assert "bytes" in list(left)
        assert left.resolve("metadata.x").path == ("x",)

    def test_resolver_hook_adds_dynamic_prefixes(self) -> None:
        fields = NATIVE_FIELDS.with_resolver(
            "extra", lambda path: Field(FieldKind.JSON, Asset.meta, path=("extra", *path))
        )
        assert fields.resolve("extra.width").path == ("extra", "width")
        with pytest.raises(QueryError, match="unknown field 'extra.width'"):
            NATIVE_FIELDS.resolve("extra.width")

    def test_facts_are_paths_into_the_current_versions_facts(self) -> None:
        field = NATIVE_FIELDS.resolve("facts.apk.packageName")
        assert field.column is Asset.facts
        assert field.path == ("apk", "packageName")

    def test_plain_mapping_works_without_resolvers(self) -> None:
        fields = {"bytes": NATIVE_FIELDS["size"]}
        assert compile_query("bytes:>1", fields, dialect="sqlite") is not None
        with pytest.raises(QueryError, match="unknown field 'metadata.x'"):
            compile_query("metadata.x:1", fields, dialect="sqlite")


class TestSortSpec:
    def test_seed_example(self) -> None:
        keys = compile_sort("name,metadata.createdAt:desc", dialect="sqlite")
        assert [(k.name, k.descending) for k in keys] == [
            ("name", False),
            ("metadata.createdAt", True),
            ("id", True),
        ]

    @pytest.mark.parametrize(
        ("direction", "descending"),
        [(":desc", True), (":DESC", True), (":Desc", False), (":asc", False), ("", False)],
    )
    def test_only_desc_is_descending(self, direction: str, descending: bool) -> None:
        assert compile_sort(f"name{direction}", dialect="sqlite")[0].descending is descending

    def test_default_is_newest_first(self) -> None:
        for sort in (None, "", "  "):
            keys = compile_sort(sort, dialect="postgresql")
            assert [(k.name, k.descending) for k in keys] == [("createdAt", True), ("id", True)]

    def test_explicit_id_ends_the_keys(self) -> None:
        keys = compile_sort("id:desc,name", dialect="sqlite")
        assert [k.name for k in keys] == ["id"]

    def test_metadata_path_sorts_numbers_then_strings(self) -> None:
        keys = compile_sort(" metadata.n : desc ", dialect="sqlite")
        assert [k.name for k in keys] == ["metadata.n#number", "metadata.n#string", "id"]

    def test_nulls_last_only_where_nulls_can_occur(self) -> None:
        keys = compile_sort("size:desc,createdAt", dialect="sqlite")
        rendered = [str(k.order_by().compile(dialect=sqlite.dialect())) for k in keys]
        assert rendered == [
            "assets.size_bytes DESC NULLS LAST",
            "assets.created_at ASC",
            "assets.id ASC",
        ]

    def test_sqlite_supports_nulls_last(self) -> None:
        assert sqlite3.sqlite_version_info >= (3, 30, 0)

    def test_too_many_sort_keys(self) -> None:
        sort = "name,size,type,kind,access,state,url,filename,extension"
        with pytest.raises(QueryError, match="more than 8 sort fields"):
            compile_sort(sort, dialect="sqlite")

    @pytest.mark.parametrize(
        ("sort", "offset", "expected"),
        [
            ("name,,size", 5, "expected a field name"),
            ("name, bogus", 6, "unknown field 'bogus'"),
            ("tags", 0, "cannot sort by the string-array field 'tags'"),
            ("name,size,name", 10, "'name' is listed twice"),
            ("na me", 0, "expected a field name"),
        ],
    )
    def test_bad_sort(self, sort: str, offset: int, expected: str) -> None:
        with pytest.raises(QueryError, match=re.escape(expected)) as excinfo:
            compile_sort(sort, dialect="sqlite")
        assert error_offset(excinfo) == offset
        assert excinfo.value.extra["parameter"] == "sort"


def make_asset(**values: object) -> Asset:
    base: dict[str, object] = {
        "id": "a" * 24,
        "name": "n",
        "created_at": datetime(2021, 5, 18, 7, 27, 27, 455001, tzinfo=UTC),
        "size_bytes": None,
        "meta": {},
        "type": AssetType.image,
    }
    return Asset(**(base | values))


class TestCursor:
    def test_round_trips_exact_values(self) -> None:
        keys = compile_sort("createdAt,size:desc,type,metadata.n,name", dialect="sqlite")
        asset = make_asset(meta={"n": 12.5}, size_bytes=None)
        values = sort_values(keys, asset)
        assert values == [asset.created_at, None, AssetType.image, 12.5, None, "n", "a" * 24]
        decoded = decode_cursor(keys, encode_cursor(keys, values))
        assert decoded == values
        assert decoded[0].microsecond == 455001

    def test_naive_datetimes_are_taken_as_utc(self) -> None:
        keys = compile_sort("createdAt", dialect="sqlite")
        naive = datetime(2021, 1, 1, 12)
        assert decode_cursor(keys, encode_cursor(keys, [naive, "x"]))[0] == naive.replace(
            tzinfo=UTC
        )

    def test_cursor_from_another_sort_is_rejected(self) -> None:
        cursor = encode_cursor(compile_sort("name", dialect="sqlite"), ["a", "b"])
        for other in ("name:desc", "size", "createdAt"):
            with pytest.raises(QueryError, match="another sort order"):
                cursor_condition(compile_sort(other, dialect="sqlite"), cursor)

    def test_cursor_works_across_dialects(self) -> None:
        # Same spec, same cursor: an app may move from SQLite to PostgreSQL.
        cursor = encode_cursor(compile_sort("name", dialect="sqlite"), ["a", "b"])
        assert decode_cursor(compile_sort("name", dialect="postgresql"), cursor) == ["a", "b"]

    def test_tampered_cursor_is_rejected(self) -> None:
        keys = compile_sort("name", dialect="sqlite")
        cursor = encode_cursor(keys, ["alpha", "id1"])
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        forged = base64.urlsafe_b64encode(raw.replace(b"alpha", b"omega")).decode()
        with pytest.raises(QueryError, match="Invalid cursor"):
            decode_cursor(keys, forged)

    @pytest.mark.parametrize(
        "cursor", ["", "!!!", "bm90IGpzb24", "W10", "WzEsMiwzXQ", "a" * 5000, "e30="]
    )
    def test_garbage_cursor_is_rejected(self, cursor: str) -> None:
        with pytest.raises(QueryError, match="Invalid cursor"):
            decode_cursor(compile_sort(None, dialect="sqlite"), cursor)

    def test_null_for_a_non_null_key_is_rejected(self) -> None:
        keys = compile_sort("createdAt", dialect="sqlite")
        with pytest.raises(TypeError):
            encode_cursor(keys, ["2021-01-01", "x"])
        cursor = encode_cursor(keys, [None, "x"])
        with pytest.raises(QueryError, match="bad value for 'createdAt'"):
            decode_cursor(keys, cursor)

    def test_enum_value_must_be_allowed(self) -> None:
        keys = compile_sort("type", dialect="sqlite")
        with pytest.raises(QueryError, match="bad value for 'type'"):
            decode_cursor(keys, encode_cursor(keys, ["pdf", "x"]))

    def test_single_direction_without_nulls_uses_a_row_comparison(self) -> None:
        keys = compile_sort(None, dialect="postgresql")
        condition = cursor_condition(keys, encode_cursor(keys, [datetime.now(UTC), "x"]))
        text = str(condition.compile(dialect=POSTGRES))
        assert text.startswith("(assets.created_at, assets.id) <")

    def test_cursor_values_must_match_the_keys(self) -> None:
        with pytest.raises(ValueError, match="2 sort keys but 1 values"):
            encode_cursor(compile_sort("name", dialect="sqlite"), ["a"])


class TestSqliteFunctions:
    def test_regexp_is_registered(self) -> None:
        connection = sqlite3.connect(":memory:")
        register_sqlite_functions(connection)
        rows = connection.execute(
            "SELECT 'AB CD' REGEXP 'B C', 'x' REGEXP 'y', 1 REGEXP '1', NULL REGEXP 'a'"
        ).fetchone()
        assert rows == (1, 0, None, None)
        connection.close()


# --- properties ---------------------------------------------------------------------------

GRAMMAR_TOKENS = [
    "name", "size", "tags", "refIds.id", "metadata.x", "createdAt", "access", "metadata", "x",
    ":", "(", ")", ",", " AND ", " ", '"', '\\"', "~", ">", ">=", "<", "<=", "null", "exists",
    "1", "2.5", "abc", "2021-05-18", "PUBLIC", "[", "]", "\\", "*", "{2}", "é", "\t",
]  # fmt: skip

fuzz_settings = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class TestProperties:
    @fuzz_settings
    @given(st.text(max_size=120))
    def test_random_text_only_raises_query_errors(self, q: str) -> None:
        self._compile_everywhere(q)

    @fuzz_settings
    @given(st.lists(st.sampled_from(GRAMMAR_TOKENS), max_size=25).map("".join))
    def test_grammar_soup_only_raises_query_errors(self, q: str) -> None:
        self._compile_everywhere(q)

    @fuzz_settings
    @given(st.text(max_size=60), st.text(max_size=200))
    def test_random_sort_and_cursor_only_raise_query_errors(self, sort: str, cursor: str) -> None:
        try:
            keys = compile_sort(sort, dialect="sqlite")
        except QueryError:
            keys = compile_sort(None, dialect="sqlite")
        try:
            cursor_condition(keys, cursor)
        except QueryError:
            pass

    @staticmethod
    def _compile_everywhere(q: str) -> None:
        for dialect in DIALECTS:
            detail = "at offset"
            try:
                compile_query(q, SEED_FIELDS, dialect=dialect)
            except QueryError as exc:
                detail = exc.detail
            assert "at offset" in detail

    @fuzz_settings
    @given(st.lists(st.deferred(lambda: TERMS), min_size=1, max_size=5))
    def test_format_then_parse_round_trips(self, generated: list[Term]) -> None:
        assert parse_query(format_query(generated)) == generated


field_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
bare_values = st.from_regex(r"[A-Za-z0-9_.\-:{}\[\]@/+=*?!#$%&']{1,20}", fullmatch=True).filter(
    lambda v: v not in ("null", "exists")
)
# NUL is refused up front (PostgreSQL text cannot hold it), so valid terms never carry it.
any_text = st.text(st.characters(blacklist_characters="\x00"), min_size=0, max_size=20)
predicates = st.one_of(
    st.builds(Predicate, st.just("eq"), bare_values, st.just(False)),
    st.builds(Predicate, st.just("eq"), any_text, st.just(True)),
    st.builds(
        Predicate,
        st.sampled_from(["gt", "ge", "lt", "le"]),
        # ">" then "=x" unquoted is ">=" then "x": not a bare operand.
        bare_values.filter(lambda v: not v.startswith("=")),
        st.booleans(),
    ),
    st.builds(Predicate, st.sampled_from(["gt", "ge", "lt", "le"]), any_text, st.just(True)),
    st.builds(Predicate, st.sampled_from(["null", "exists"])),
    st.builds(Predicate, st.just("regex"), any_text.filter(bool)),
)
TERMS: st.SearchStrategy[Term] = st.builds(
    Term, field_names, st.lists(predicates, min_size=1, max_size=4).map(tuple), st.booleans()
).map(lambda t: t if len(t.predicates) > 1 else Term(t.field, t.predicates))
