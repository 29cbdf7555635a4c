"""Small pure modules: delivery helpers, policies, signing, sniffing, ids, config, scopes,
announced digests, blob keys and the ingest pipeline over the in-memory store."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from assetd.assets.delivery import content_disposition, etag_matches, parse_range
from assetd.assets.ingest import ExpectedDigests, Ingest
from assetd.assets.models import AssetType
from assetd.assets.policy import (
    check_extension,
    check_type,
    clean_filename,
    extension_of,
    size_limit,
    too_large,
)
from assetd.assets.signing import UrlSigner
from assetd.assets.sniff import Sniffer, asset_type_for
from assetd.auth.principal import ADMIN, DELETE, READ, WRITE, Principal, expand_scopes
from assetd.config import Settings, to_async_url, to_sync_url
from assetd.errors import (
    DigestMismatch,
    InvalidInput,
    PayloadTooLarge,
    PolicyViolation,
    RangeNotSatisfiable,
)
from assetd.ids import ID_PATTERN, is_id, new_id
from assetd.storage.base import InvalidKey
from assetd.storage.keys import blob_key, check_key
from assetd.storage.memory import InMemoryBlobStorage
from assetd.tenants.service import TenantSnapshot

SHA = hashlib.sha256(b"x").hexdigest()


def snapshot(**policy: object) -> TenantSnapshot:
    fields: dict[str, object] = {
        "id": "t" * 24,
        "slug": "acme",
        "max_file_size_bytes": None,
        "allowed_extensions": None,
        "allowed_types": None,
        "quota_bytes": None,
    }
    fields.update(policy)
    return TenantSnapshot(**fields)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- delivery ---------------------------------------------------------------------------


class TestParseRange:
    @pytest.mark.parametrize(
        ("header", "size", "expected"),
        [
            (None, 10, None),
            ("", 10, None),
            ("bytes=0-9", 10, (0, 9)),
            ("bytes=0-0", 10, (0, 0)),
            ("bytes=3-99", 10, (3, 9)),
            ("bytes=5-", 10, (5, 9)),
            ("bytes=-3", 10, (7, 9)),
            ("bytes=-30", 10, (0, 9)),
            (" bytes=2-4 ", 10, (2, 4)),
            ("bytes=9-3", 10, None),  # invalid: ignored, the whole body goes out
            ("bytes=0-1,3-4", 10, None),  # several ranges: ignored
            ("bytes=-", 10, None),
            ("items=0-4", 10, None),
            ("bytes=a-b", 10, None),
        ],
    )
    def test_examples(self, header: str | None, size: int, expected: object) -> None:
        assert parse_range(header, size) == expected

    @pytest.mark.parametrize(
        ("header", "size"),
        [
            ("bytes=10-", 10),
            ("bytes=10-20", 10),
            ("bytes=-0", 10),
            ("bytes=0-0", 0),
            ("bytes=0-", 0),
            ("bytes=-5", 0),
        ],
    )
    def test_unsatisfiable(self, header: str, size: int) -> None:
        with pytest.raises(RangeNotSatisfiable) as raised:
            parse_range(header, size)
        assert raised.value.size == size

    @given(
        header=st.one_of(
            st.text(max_size=40),
            st.from_regex(r"\A\s?bytes=\d{0,25}-\d{0,25}\s?\Z"),
            st.builds(
                "bytes={}-{}".format,
                st.one_of(st.just(""), st.integers(0, 2**70)),
                st.one_of(st.just(""), st.integers(0, 2**70)),
            ),
            st.builds("bytes={}-".format, st.text("0123456789", min_size=1, max_size=6000)),
        ),
        size=st.integers(0, 2**63),
    )
    # A Range header is 16 KiB at most on the wire; Python refuses int() of 4301+ digits.
    @example(header="bytes=" + "1" * 5000 + "-", size=10)
    @example(header="bytes=0-" + "9" * 5000, size=10)
    def test_only_raises_unsatisfiable_and_stays_in_bounds(self, header: str, size: int) -> None:
        outcome: tuple[int, int] | None | RangeNotSatisfiable
        try:
            outcome = parse_range(header, size)
        except RangeNotSatisfiable as exc:
            outcome = exc
        if isinstance(outcome, RangeNotSatisfiable):
            assert outcome.size == size
        elif outcome is not None:
            start, end = outcome
            assert 0 <= start <= end < size

    @given(start=st.integers(0, 10**6), end=st.integers(0, 10**6), size=st.integers(1, 10**6))
    def test_a_satisfiable_range_is_the_overlap_with_the_content(
        self, start: int, end: int, size: int
    ) -> None:
        header = f"bytes={start}-{end}"
        if start > end:
            assert parse_range(header, size) is None
        elif start >= size:
            with pytest.raises(RangeNotSatisfiable):
                parse_range(header, size)
        else:
            assert parse_range(header, size) == (start, min(end, size - 1))


class TestContentDisposition:
    @pytest.mark.parametrize(
        ("mime", "disposition"),
        [
            ("image/png", "inline"),
            ("image/jpeg", "inline"),
            ("video/mp4", "inline"),
            ("application/pdf", "inline"),
            ("text/plain", "inline"),
            ("text/html", "attachment"),
            ("image/svg+xml", "attachment"),
            ("application/xhtml+xml", "attachment"),
            ("application/octet-stream", "attachment"),
            ("text/javascript", "attachment"),
        ],
    )
    def test_only_safe_types_render_inline(self, mime: str, disposition: str) -> None:
        assert content_disposition("f", mime).split(";")[0] == disposition

    def test_download_forces_attachment(self) -> None:
        assert content_disposition("a.png", "image/png", download=True).startswith("attachment;")

    def test_exact_name_and_ascii_fallback(self) -> None:
        value = content_disposition('Фото "1"\\日本.png', "image/png")
        assert value == (
            'inline; filename="???? _1__??.png"; '
            "filename*=UTF-8''%D0%A4%D0%BE%D1%82%D0%BE%20%221%22%5C%E6%97%A5%E6%9C%AC.png"
        )

    def test_no_name_is_just_the_disposition(self) -> None:
        assert content_disposition("", "image/png") == "inline"

    @given(st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80))
    @example("a\r\nSet-Cookie: x=1")
    def test_header_value_is_safe_ascii_and_keeps_the_name(self, name: str) -> None:
        value = content_disposition(name, "application/octet-stream")
        assert all(32 <= ord(ch) < 127 for ch in value)
        match = re.fullmatch(r'attachment; filename="([^"\\]*)"; filename\*=UTF-8\'\'(\S+)', value)
        assert match is not None, value
        assert unquote(match.group(2), errors="strict") == name


class TestEtagMatches:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, False),
            ("", False),
            ("*", True),
            (" * ", True),
            ('"abc"', True),
            ('W/"abc"', True),
            ('"x", "abc"', True),
            ('"x",W/"abc"', True),
            ('"abcd"', False),
            ("abc", False),
            ('"ABC"', False),
        ],
    )
    def test_matching(self, header: str | None, expected: bool) -> None:
        assert etag_matches(header, '"abc"') is expected


# -- policy -----------------------------------------------------------------------------


class TestPolicy:
    @pytest.mark.parametrize(
        ("raw", "clean"),
        [
            ("photo.jpg", "photo.jpg"),
            ("../../etc/passwd", "passwd"),
            ("C:\\Users\\me\\report.pdf", "report.pdf"),
            ("dir/sub/a b.txt", "a b.txt"),
            ("  spaced.txt  ", "spaced.txt"),
            ("bell\x07and\x00nul\u200b.txt", "bellandnul.txt"),
            ("Cafe\u0301.txt", "Café.txt"),  # NFD in, NFC out
            ("x" * 300, "x" * 255),
        ],
    )
    def test_clean_filename(self, raw: str, clean: str) -> None:
        assert clean_filename(raw) == clean

    @pytest.mark.parametrize(
        ("name", "extension"),
        [
            ("a.TXT", "txt"),
            ("archive.tar.gz", "gz"),
            ("noext", ""),
            (".bashrc", ""),
            ("a." + "x" * 40, "x" * 32),
        ],
    )
    def test_extension_of(self, name: str, extension: str) -> None:
        assert extension_of(name) == extension

    def test_size_limit_is_the_smaller_one(self) -> None:
        assert size_limit(snapshot(), 100) == 100
        assert size_limit(snapshot(max_file_size_bytes=10), 100) == 10
        assert size_limit(snapshot(max_file_size_bytes=1000), 100) == 100
        error = too_large(10)
        assert isinstance(error, PayloadTooLarge)
        assert error.extra == {"limit": 10}

    def test_check_extension(self) -> None:
        check_extension(snapshot(), "exe")
        tenant = snapshot(allowed_extensions=("png", "jpg"))
        check_extension(tenant, "png")
        with pytest.raises(PolicyViolation) as raised:
            check_extension(tenant, "exe")
        assert ".exe" in raised.value.detail
        assert raised.value.extra["code"] == "extension_not_allowed"
        with pytest.raises(PolicyViolation, match="no extension"):
            check_extension(tenant, "")

    def test_check_type_takes_asset_types_and_mime_patterns(self) -> None:
        check_type(snapshot(), "text/html", AssetType.other)
        tenant = snapshot(allowed_types=("image", "application/pdf", "video/*"))
        check_type(tenant, "image/png", AssetType.image)
        check_type(tenant, "application/pdf", AssetType.document)
        check_type(tenant, "video/mp4", AssetType.video)
        with pytest.raises(PolicyViolation) as raised:
            check_type(tenant, "text/plain", AssetType.document)
        assert raised.value.extra["code"] == "type_not_allowed"
        with pytest.raises(PolicyViolation):
            check_type(tenant, "application/pdfx", AssetType.other)


# -- signing ----------------------------------------------------------------------------


class TestUrlSigner:
    SECRET = b"0123456789abcdef-secret"

    def test_rejects_short_secrets(self) -> None:
        with pytest.raises(ValueError, match="16 bytes"):
            UrlSigner(b"short")

    def test_verifies_its_own_unexpired_signature(self) -> None:
        signer = UrlSigner(self.SECRET)
        expires = int(time.time()) + 60
        signature = signer.sign_content("t1", "a1", 2, expires)
        assert re.fullmatch(r"[0-9a-f]{64}", signature)
        assert signer.verify_content("t1", "a1", 2, expires, signature)

    @pytest.mark.parametrize(
        ("tenant", "asset", "version", "delta"),
        [("t2", "a1", 2, 0), ("t1", "a2", 2, 0), ("t1", "a1", 3, 0), ("t1", "a1", 2, 1)],
    )
    def test_any_changed_part_fails(
        self, tenant: str, asset: str, version: int, delta: int
    ) -> None:
        signer = UrlSigner(self.SECRET)
        expires = int(time.time()) + 60
        signature = signer.sign_content("t1", "a1", 2, expires)
        assert not signer.verify_content(tenant, asset, version, expires + delta, signature)

    def test_expired_or_foreign_signatures_fail(self) -> None:
        signer = UrlSigner(self.SECRET)
        past = int(time.time()) - 1
        assert not signer.verify_content(
            "t1", "a1", 1, past, signer.sign_content("t1", "a1", 1, past)
        )
        future = int(time.time()) + 60
        other = UrlSigner(b"another-secret-of-16+").sign_content("t1", "a1", 1, future)
        assert not signer.verify_content("t1", "a1", 1, future, other)
        assert not signer.verify_content("t1", "a1", 1, future, "")

    def test_purposes_and_parts_are_kept_apart(self) -> None:
        signer = UrlSigner(self.SECRET)
        assert signer.signature("content", "a", "b") != signer.signature("other", "a", "b")
        assert signer.signature("content", "a", "b") != signer.signature("content", "ab")


# -- sniffing ---------------------------------------------------------------------------


def zip_bytes(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"x" * 200)
    return buffer.getvalue()


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000100000001008020000009091683600")


@pytest.fixture(scope="module")
def sniffer() -> Sniffer:
    return Sniffer()


class TestSniffer:
    @pytest.mark.parametrize(
        ("head", "extension", "mime", "asset_type"),
        [
            (PNG, "png", "image/png", AssetType.image),
            (PNG, "txt", "image/png", AssetType.image),  # the bytes decide, not the name
            (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "gif", "image/gif", AssetType.image),
            (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "pdf", "application/pdf", AssetType.document),
            (b"#!/bin/sh\necho hello\n", "sh", "text/x-shellscript", AssetType.script),
            (b"hello plain words\n" * 10, "txt", "text/plain", AssetType.document),
            (b"", "txt", "application/x-empty", AssetType.other),
            (zip_bytes("a.txt"), "zip", "application/zip", AssetType.package),
            (
                zip_bytes("a.txt"),
                "apk",
                "application/vnd.android.package-archive",
                AssetType.app,
            ),
            (zip_bytes("a.txt"), "epub", "application/epub+zip", AssetType.book),
        ],
    )
    def test_classify(
        self, sniffer: Sniffer, head: bytes, extension: str, mime: str, asset_type: AssetType
    ) -> None:
        assert sniffer.classify(head, extension) == (mime, asset_type)

    def test_certificates_by_content_or_extension(self, sniffer: Sniffer) -> None:
        pem = b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
        assert sniffer.classify(pem, "txt")[1] is AssetType.certificate
        assert sniffer.classify(b"\x30\x82\x01\x0a" + bytes(200), "der")[1] in (
            AssetType.certificate,
            AssetType.other,
        )
        assert asset_type_for("application/octet-stream", "p12") is AssetType.certificate

    def test_a_real_apk_is_an_app(self, sniffer: Sniffer) -> None:
        """APKs start with AndroidManifest.xml or classes.dex; libmagic then names the APK
        type itself instead of application/zip."""
        for first in ("AndroidManifest.xml", "classes.dex"):
            head = zip_bytes(first, "resources.arsc")
            assert sniffer.classify(head, "apk") == (
                "application/vnd.android.package-archive",
                AssetType.app,
            )

    @pytest.mark.parametrize(
        ("mime", "extension", "asset_type"),
        [
            ("video/mp4", "", AssetType.video),
            ("audio/mpeg", "", AssetType.audio),
            ("text/x-python", "py", AssetType.script),
            ("text/x-c", "c", AssetType.other),
            ("text/plain", "py", AssetType.script),
            ("application/vnd.ms-excel", "", AssetType.document),
            (
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "",
                AssetType.document,
            ),
            ("application/epub+zip", "", AssetType.book),
            ("application/x-x509-ca-cert", "", AssetType.certificate),
            ("application/octet-stream", "bin", AssetType.other),
        ],
    )
    def test_asset_type_for(self, mime: str, extension: str, asset_type: AssetType) -> None:
        assert asset_type_for(mime, extension) is asset_type


# -- ids, keys, config, scopes ------------------------------------------------------------


class TestIds:
    def test_new_ids_are_valid_unique_and_time_ordered(self) -> None:
        first = new_id()
        ids = {new_id() for _ in range(2000)}
        assert len(ids) == 2000
        assert all(ID_PATTERN.match(i) for i in ids)
        time.sleep(0.002)
        assert new_id() > first

    @pytest.mark.parametrize(
        ("value", "valid"),
        [
            ("0" * 24, True),
            ("a" * 24, True),
            ("A" * 24, False),
            ("0" * 23, False),
            ("g" * 24, False),
            ("0" * 24 + "\n", False),
        ],
    )
    def test_is_id(self, value: str, valid: bool) -> None:
        assert is_id(value) is valid


class TestBlobKeys:
    def test_blob_key_splits_the_digest(self) -> None:
        assert blob_key("tenant1", SHA) == f"tenant1/{SHA[:2]}/{SHA[2:]}"
        with pytest.raises(InvalidKey):
            blob_key("tenant1", SHA.upper())
        with pytest.raises(InvalidKey):
            blob_key("tenant1", "abc")

    @pytest.mark.parametrize(
        "key", ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a/", "a\\b", "a/b c", "ä/b"]
    )
    def test_check_key_refuses_escapes(self, key: str) -> None:
        with pytest.raises(InvalidKey):
            check_key(key)

    @pytest.mark.parametrize("key", ["a", "t_1/ab/cd", "t-1/x.y"])
    def test_check_key_accepts_plain_keys(self, key: str) -> None:
        assert check_key(key) == key


class TestConfig:
    @pytest.fixture(autouse=True)
    def clean_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import os

        for name in list(os.environ):
            if name.startswith("ASSETD_"):
                monkeypatch.delenv(name)

    @pytest.mark.parametrize(
        ("url", "async_url"),
        [
            ("sqlite:///data/a.db", "sqlite+aiosqlite:///data/a.db"),
            ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
            ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
            ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
            ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ],
    )
    def test_plain_urls_map_to_async_drivers(self, url: str, async_url: str) -> None:
        assert to_async_url(url) == async_url

    def test_sync_url(self) -> None:
        assert to_sync_url("sqlite+aiosqlite:///x.db") == "sqlite:///x.db"

    def test_defaults_live_in_the_data_dir(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path)
        assert settings.resolved_database_url() == f"sqlite+aiosqlite:///{tmp_path}/assetd.db"
        assert settings.resolved_storage_url() == f"file://{tmp_path}/blobs"
        assert settings.resolved_public_url() == "http://127.0.0.1:8000"

    def test_environment_variables(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ASSETD_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("ASSETD_DATABASE_URL", "postgres://assetd@db:5432/assetd")
        monkeypatch.setenv("ASSETD_PUBLIC_URL", "https://assets.example.com/")
        monkeypatch.setenv("ASSETD_PORT", "9000")
        monkeypatch.setenv("ASSETD_BOOTSTRAP_API_KEY", "assetd_from-the-environment")
        settings = Settings()
        assert settings.data_dir == tmp_path
        assert settings.port == 9000
        assert settings.resolved_database_url() == "postgresql+psycopg://assetd@db:5432/assetd"
        assert settings.resolved_public_url() == "https://assets.example.com"
        assert settings.bootstrap_api_key is not None
        assert "from-the-environment" not in repr(settings)


class TestScopes:
    @pytest.mark.parametrize(
        ("scopes", "expanded"),
        [
            ("assets:read assets:write", {READ, WRITE}),
            (["assets:read"], {READ}),
            (None, set()),
            ("", set()),
            ("media.asset_read", {"media.asset_read", READ}),
            (["media.asset_manage"], {"media.asset_manage", READ, WRITE, DELETE}),
            ("mdm.global.asset.create other", {"mdm.global.asset.create", READ, WRITE, "other"}),
        ],
    )
    def test_expand_scopes(self, scopes: object, expanded: set[str]) -> None:
        assert expand_scopes(scopes) == frozenset(expanded)

    def test_admin_has_every_scope(self) -> None:
        admin = Principal(snapshot(), "key", frozenset({ADMIN}))
        reader = Principal(snapshot(), "key", frozenset({READ}), email="me@example.com")
        assert admin.has(DELETE)
        assert admin.is_admin
        assert reader.has(READ)
        assert not reader.has(WRITE)
        assert not reader.is_admin
        assert (admin.actor, reader.actor) == ("key", "me@example.com")


# -- announced digests and the ingest pipeline --------------------------------------------


class TestExpectedDigests:
    DATA = b"hello"
    SHA_HEX = hashlib.sha256(DATA).hexdigest()
    MD5_HEX = hashlib.md5(DATA).hexdigest()
    SHA_B64 = b64(hashlib.sha256(DATA).digest())
    MD5_B64 = b64(hashlib.md5(DATA).digest())

    def test_none_announced(self) -> None:
        assert ExpectedDigests.from_headers({}) == ExpectedDigests(None, None)

    @pytest.mark.parametrize(
        "headers",
        [
            {"content-digest": f"sha-256=:{SHA_B64}:"},
            {"content-digest": f"SHA-256=:{SHA_B64}:, md5=:{MD5_B64}:"},
            {"digest": f"SHA-256={SHA_B64}"},
            {"x-checksum-sha256": SHA_HEX.upper()},
        ],
    )
    def test_sha256_from_any_header(self, headers: dict[str, str]) -> None:
        assert ExpectedDigests.from_headers(headers).sha256 == self.SHA_HEX

    @pytest.mark.parametrize(
        "headers",
        [
            {"content-md5": MD5_B64},
            {"digest": f"md5={MD5_B64}"},
            {"content-digest": f"md5=:{MD5_B64}:"},
        ],
    )
    def test_md5_from_any_header(self, headers: dict[str, str]) -> None:
        assert ExpectedDigests.from_headers(headers).md5 == self.MD5_HEX

    def test_unknown_algorithms_are_ignored(self) -> None:
        assert ExpectedDigests.from_headers({"content-digest": "sha-512=:AAAA:"}).sha256 is None

    @pytest.mark.parametrize(
        "headers",
        [
            {"content-digest": "sha-256=:not base64!:"},
            {"content-md5": "%%%"},
            {"x-checksum-sha256": "abc"},
            {"x-checksum-sha256": "z" * 64},
        ],
    )
    def test_malformed_values_are_invalid_input(self, headers: dict[str, str]) -> None:
        with pytest.raises(InvalidInput):
            ExpectedDigests.from_headers(headers)


@pytest.mark.anyio
class TestIngest:
    async def feed_all(self, ingest: Ingest, data: bytes, chunk: int = 100_000) -> None:
        for start in range(0, len(data), chunk):
            await ingest.feed(data[start : start + chunk])

    async def test_stages_hashes_and_publishes(self) -> None:
        storage = InMemoryBlobStorage()
        data = bytes(range(256)) * 10_000  # several batches
        ingest = Ingest(storage, limit_bytes=None, on_limit=too_large)
        await self.feed_all(ingest, data)
        staged = await ingest.finish("a.bin")
        assert staged.sha256 == hashlib.sha256(data).hexdigest()
        assert staged.md5 == hashlib.md5(data).hexdigest()
        assert staged.size_bytes == len(data)
        assert staged.head == data[:8192]
        assert storage.blobs == {}
        await staged.publish(blob_key("t", staged.sha256))
        assert storage.blobs[blob_key("t", staged.sha256)][0] == data
        assert storage.staging == {}

    async def test_the_limit_stops_the_stream_and_drops_what_was_staged(self) -> None:
        storage = InMemoryBlobStorage()
        ingest = Ingest(storage, limit_bytes=2_500_000, on_limit=too_large)
        with pytest.raises(PayloadTooLarge):
            await self.feed_all(ingest, b"x" * 3_000_000)
        assert storage.staging == {}
        assert ingest.size_bytes <= 2_600_000

    async def test_announced_digest_mismatch_drops_the_bytes(self) -> None:
        storage = InMemoryBlobStorage()
        expected = ExpectedDigests(sha256=hashlib.sha256(b"other").hexdigest())
        ingest = Ingest(storage, limit_bytes=None, on_limit=too_large, expected=expected)
        await ingest.feed(b"these bytes")
        with pytest.raises(DigestMismatch):
            await ingest.finish()
        assert storage.staging == {}

    async def test_empty_upload_still_stages(self) -> None:
        storage = InMemoryBlobStorage()
        staged = await Ingest(storage, limit_bytes=0, on_limit=too_large).finish()
        assert staged.size_bytes == 0
        assert staged.sha256 == hashlib.sha256(b"").hexdigest()
        await staged.discard()
        assert storage.staging == {}
