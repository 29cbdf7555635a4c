"""``collection:<id>``: membership terms compile to an indexed EXISTS, on both databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from assetd.assets.query import compile_query, compile_sort
from assetd.errors import QueryError

DIALECTS = ["sqlite", "postgresql"]
POSTGRES = postgresql.dialect()  # type: ignore[no-untyped-call]  # renders; needs no driver


def sql(condition: sa.ColumnElement[bool] | None, dialect: str) -> str:
    assert condition is not None
    compiler_dialect = sqlite.dialect() if dialect == "sqlite" else POSTGRES
    return str(condition.compile(dialect=compiler_dialect))


class TestMembershipField:
    @pytest.mark.parametrize("dialect", DIALECTS)
    @pytest.mark.parametrize("name", ["collection", "collections"])
    def test_id_becomes_an_exists_on_the_link_key(self, dialect: str, name: str) -> None:
        text = sql(compile_query(f"{name}:abc", dialect=dialect), dialect)
        assert "EXISTS" in text
        assert "collection_assets.collection_id" in text
        assert "collection_assets.asset_id = assets.id" in text
        assert "abc" not in text  # bound, never inlined

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_several_ids_are_any_of(self, dialect: str) -> None:
        text = sql(compile_query("collection:(a,b)", dialect=dialect), dialect)
        assert text.count("EXISTS") == 2
        assert " OR " in text

    @pytest.mark.parametrize("dialect", DIALECTS)
    def test_null_and_exists_ask_for_any_membership(self, dialect: str) -> None:
        none = sql(compile_query("collection:null", dialect=dialect), dialect)
        assert "NOT (EXISTS" in none
        assert "collection_assets.tenant_id = assets.tenant_id" in none
        some = sql(compile_query("collection:exists", dialect=dialect), dialect)
        assert some.startswith("EXISTS")

    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("collection:>a", "'>' is not supported on the membership field 'collection'"),
            ("collection:~a", "a regular expression is not supported on the membership field"),
        ],
    )
    def test_comparisons_and_regexes_are_refused(self, q: str, expected: str) -> None:
        with pytest.raises(QueryError, match=expected):
            compile_query(q, dialect="sqlite")

    def test_cannot_sort_by_membership(self) -> None:
        with pytest.raises(QueryError, match="cannot sort by the membership field"):
            compile_sort("collection", dialect="sqlite")
