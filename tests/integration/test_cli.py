"""The `assetd` command line, run in-process: admin commands on a data dir, API commands
against a real server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner, Result

from assetd.cli import app
from tests.server import run_server

ID = re.compile(r"\b[0-9a-f]{24}\b")
_IHDR = b"IHDR" + struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d" + _IHDR + struct.pack(">I", zlib.crc32(_IHDR))


class Cli:
    """Runs `assetd …` in-process with an environment of its own (no ASSETD_* leaks in)."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.data_dir = data_dir
        self.env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ASSETD_")}
        self.env["ASSETD_DATA_DIR"] = str(data_dir)
        self.env["ASSETD_DATABASE_URL"] = database_url
        self.runner = CliRunner()

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(app, list(args), env=self.env)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args).stdout)

    def report(self, *args: str) -> Any:
        """The JSON document a maintenance command prints, ignoring stray lines before it
        (test_gc_prints_only_json holds gc to printing nothing else)."""
        stdout = self.ok(*args).stdout
        start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1
        return json.loads(stdout[start:])


def assert_one_line_error(result: Result, message: str) -> None:
    """exit 1, a single 'error: …' line on stderr, no traceback."""
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert message in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def cli(tmp_path: Path, server_database: str | None) -> Iterator[Cli]:
    # A real `assetd` run starts with structlog unconfigured; an app built by an earlier test
    # in this process must not change where the command's log lines go.
    structlog.reset_defaults()
    yield Cli(tmp_path / "data", server_database)
    structlog.reset_defaults()


@pytest.fixture
def migrated(cli: Cli) -> Cli:
    cli.ok("migrate")
    return cli


class TestMigrate:
    def test_migrate_creates_the_database_and_is_idempotent(self, cli: Cli) -> None:
        assert "database is up to date" in cli.ok("migrate").stdout
        assert "database is up to date" in cli.ok("migrate").stdout
        if cli.env["ASSETD_DATABASE_URL"] is None:
            assert (cli.data_dir / "assetd.db").is_file()


class TestTenantCommands:
    def test_create_then_list_shows_policy_and_usage(self, migrated: Cli) -> None:
        created = migrated.ok(
            "tenant", "create", "acme", "--name", "Acme Corp", "--quota", "5000"
        ).stdout
        match = re.fullmatch(r"created tenant acme \(([0-9a-f]{24})\)\n", created)
        assert match, created
        migrated.ok("tenant", "create", "globex")

        listing = migrated.ok("tenant", "list").stdout
        acme = next(line for line in listing.splitlines() if " acme " in line)
        assert match.group(1) in acme
        assert "5000" in acme
        globex = next(line for line in listing.splitlines() if " globex " in line)
        assert " - " in globex  # no quota

    def test_duplicate_slug_is_a_one_line_error(self, migrated: Cli) -> None:
        migrated.ok("tenant", "create", "acme")
        assert_one_line_error(migrated("tenant", "create", "acme"), "already exists")

    @pytest.mark.parametrize("slug", ["Bad!", "x" * 17])
    def test_invalid_slug_is_a_one_line_error(self, migrated: Cli, slug: str) -> None:
        assert_one_line_error(migrated("tenant", "create", slug), "slug")
        assert slug not in migrated.ok("tenant", "list").stdout


class TestKeyCommands:
    def test_create_list_revoke(self, migrated: Cli) -> None:
        migrated.ok("tenant", "create", "acme")
        created = migrated.ok(
            "key", "create", "--tenant", "acme", "--name", "ci", "--scope", "assets:read"
        ).stdout.splitlines()
        assert created[0].startswith("key id ")
        key_id = created[0].removeprefix("key id ")
        assert ID.fullmatch(key_id)
        secret = created[1]
        assert secret.startswith("assetd_")
        assert len(secret) >= 40

        listing = migrated.ok("key", "list", "--tenant", "acme").stdout
        assert secret not in listing
        assert secret[:14] in listing  # the prefix identifies it
        assert any(" ci " in line for line in listing.splitlines())

        assert migrated.ok("key", "revoke", key_id, "--tenant", "acme").stdout == (
            f"revoked {key_id}\n"
        )
        listing = migrated.ok("key", "list", "--tenant", "acme").stdout
        row = next(line for line in listing.splitlines() if " ci " in line)
        assert row.rstrip(" │").rsplit("│", 1)[1].strip() not in ("", "-")

    def test_keys_carry_repeatable_roles(self, migrated: Cli) -> None:
        migrated.ok("tenant", "create", "acme")
        migrated.ok("key", "create", "--tenant", "acme", "--role", "editor", "--role", "legal")
        migrated.env["COLUMNS"] = "200"  # room for every column
        listing = migrated.ok("key", "list", "--tenant", "acme").stdout
        assert "editor" in listing
        assert "legal" in listing
        assert_one_line_error(
            migrated("key", "create", "--tenant", "acme", "--role", "x" * 101), "roles"
        )

    def test_list_shows_whole_key_ids(self, migrated: Cli) -> None:
        """`key revoke ID` needs the id that `key list` shows, also when piped (80 columns)."""
        migrated.ok("tenant", "create", "acme")
        first = migrated.ok("key", "create", "--tenant", "acme").stdout.split()[2]
        listing = migrated.ok("key", "list", "--tenant", "acme").stdout
        assert first in listing

    def test_errors_are_one_line(self, migrated: Cli) -> None:
        migrated.ok("tenant", "create", "acme")
        assert_one_line_error(migrated("key", "create", "--tenant", "nope"), "'nope' not found")
        assert_one_line_error(
            migrated("key", "create", "--tenant", "acme", "--scope", "bogus"),
            "unknown scopes: bogus",
        )
        assert_one_line_error(
            migrated("key", "revoke", "0" * 24, "--tenant", "acme"), "API key not found"
        )
        assert_one_line_error(migrated("key", "list", "--tenant", "nope"), "not found")


@pytest.mark.slow
class TestApiCommands:
    def test_readme_flow(self, migrated: Cli, tmp_path: Path) -> None:
        # The operator makes a tenant and key with the CLI; the server (sharing the data dir
        # and database) then skips its own bootstrap and accepts that key.
        migrated.ok("tenant", "create", "acme")
        secret = migrated.ok("key", "create", "--tenant", "acme").stdout.splitlines()[1]
        photo = tmp_path / "фото.png"
        photo.write_bytes(PNG_HEAD + bytes(range(256)) * 4096)
        notes = tmp_path / "notes.txt"
        notes.write_text("hello from the command line\n")

        with run_server(
            migrated.data_dir, database_url=migrated.env["ASSETD_DATABASE_URL"]
        ) as server:
            assert server.key is None
            assert "Created tenant" not in server.output()
            migrated.env["ASSETD_URL"] = server.url
            migrated.env["ASSETD_API_KEY"] = secret

            # The exact line format has its own test below; here only the ids matter.
            photo_id, notes_id = ID.findall(migrated.ok("upload", str(photo), str(notes)).stdout)

            page = migrated.json("ls", "--q", "type:image", "--json")
            assert [item["id"] for item in page["items"]] == [photo_id]
            assert page["items"][0]["name"] == "фото.png"
            assert "фото.png" in migrated.ok("ls").stdout

            shown = migrated.json("get", photo_id)
            assert shown["id"] == photo_id
            assert shown["sizeBytes"] == photo.stat().st_size

            copy = tmp_path / "copy.png"
            out = migrated.ok("get", photo_id, "-o", str(copy)).stdout
            assert out.startswith(f"wrote {photo.stat().st_size} bytes")
            assert copy.read_bytes() == photo.read_bytes()
            head = tmp_path / "head.bin"
            out = migrated.ok("get", photo_id, "-o", str(head), "--range", "0-9").stdout
            assert out.startswith("wrote 10 bytes")
            assert head.read_bytes() == photo.read_bytes()[:10]

            assert migrated.ok("trash", photo_id).stdout == f"trashed {photo_id}\n"
            listed = migrated.json("ls", "--json")["items"]
            assert [item["id"] for item in listed] == [notes_id]
            listed = migrated.json("ls", "--trashed", "only", "--json")["items"]
            assert [item["id"] for item in listed] == [photo_id]
            assert migrated.ok("restore", photo_id).stdout == f"restored {photo_id}\n"
            listed = migrated.json("ls", "--json")["items"]
            assert {item["id"] for item in listed} == {photo_id, notes_id}

            assert_one_line_error(migrated("get", "0" * 24), "404")
            assert_one_line_error(migrated("ls", "--q", "size:>>1"), "400")

    def test_output_is_script_friendly(self, cli: Cli, tmp_path: Path) -> None:
        """One `ID<TAB>PATH` line per uploaded file; `ls` shows whole ids, even when piped."""
        files = []
        for name in ("a-file-with-a-rather-long-name-like-real-ones-have.txt", "b.txt"):
            files.append(tmp_path / name)
            files[-1].write_text(f"content of {name}\n")
        with run_server(cli.data_dir, database_url=cli.env["ASSETD_DATABASE_URL"]) as server:
            cli.env["ASSETD_URL"] = server.url
            cli.env["ASSETD_API_KEY"] = "assetd_not-a-real-key-at-all"
            assert_one_line_error(cli("ls"), "401")
            cli.env["ASSETD_API_KEY"] = server.key

            lines = cli.ok("upload", *map(str, files)).stdout.splitlines()
            ids = ID.findall("\n".join(lines))
            assert len(ids) == 2
            table = cli.ok("ls").stdout
        expected = [f"{ids[0]}\t{files[0]}", f"{ids[1]}\t{files[1]}"]
        ls_shows_ids = all(asset_id in table for asset_id in ids)
        assert (lines == expected, ls_shows_ids) == (True, True), (
            f"upload printed {lines!r}, expected {expected!r}; ls printed:\n{table}"
        )

    def test_big_upload_goes_in_parts_and_resumes(self, cli: Cli, tmp_path: Path) -> None:
        from assetd.client import AssetdClient

        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(3 * 5 * 1024 * 1024 + 777))
        state_home = tmp_path / "state"
        cli.env["XDG_STATE_HOME"] = str(state_home)
        with run_server(cli.data_dir, database_url=cli.env["ASSETD_DATABASE_URL"]) as server:
            cli.env["ASSETD_URL"] = server.url
            cli.env["ASSETD_API_KEY"] = server.key
            # The first run "crashes" after one part: the session stays open, its id on disk.
            with AssetdClient(server.url, server.key) as client:
                session = client.upload_in_parts(
                    big,
                    part_size=5 * 1024 * 1024,
                    state_dir=state_home / "assetd" / "uploads",
                    stop_after_parts=1,
                )
                assert len(list((state_home / "assetd" / "uploads").iterdir())) == 1
                line = cli.ok(
                    "upload", "--parts", "--part-size", str(5 * 1024 * 1024), str(big)
                ).stdout
                asset_id = ID.findall(line)[0]
                # The same session finished: its asset is the one the first run started.
                assert asset_id == session["assetId"]
                status = client._http.get(f"/v1/uploads/{session['id']}").json()
                assert status["state"] == "completed"
                copy = tmp_path / "copy.bin"
                client.download(asset_id, copy)
                assert copy.read_bytes() == big.read_bytes()
            assert list((state_home / "assetd" / "uploads").iterdir()) == []


class TestMaintenanceCommands:
    def test_gc_prints_only_json(self, migrated: Cli) -> None:
        """`assetd gc | jq` must work: log lines belong on stderr."""
        assert migrated.json("gc", "--dry-run")["orphans"] == []
        assert migrated.json("gc")["bytes_freed"] == 0

    def test_gc_dry_run_reports_and_keeps_then_gc_deletes(self, migrated: Cli) -> None:
        orphan = migrated.data_dir / "blobs" / "sometenant" / "ab" / ("c" * 62)
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(b"left behind")
        two_hours_ago = time.time() - 7200
        os.utime(orphan, (two_hours_ago, two_hours_ago))

        report = migrated.report("gc", "--dry-run")
        assert report["orphan_blobs_deleted"] == 1
        assert report["orphans"] == [f"sometenant/ab/{'c' * 62}"]
        assert report["bytes_freed"] == len(b"left behind")
        assert orphan.exists()

        assert migrated.report("gc", "--grace-seconds", "999999")["orphans"] == []
        assert orphan.exists()
        assert migrated.report("gc")["orphan_blobs_deleted"] == 1
        assert not orphan.exists()

    @pytest.mark.slow
    def test_check_passes_then_fails_when_a_blob_file_is_gone(
        self, migrated: Cli, tmp_path: Path
    ) -> None:
        report = migrated.report("check")
        assert report["ok"] is True
        assert report["blobs_checked"] == 0

        migrated.ok("tenant", "create", "acme")
        secret = migrated.ok("key", "create", "--tenant", "acme").stdout.splitlines()[1]
        first, second = tmp_path / "one.bin", tmp_path / "two.bin"
        first.write_bytes(b"first file " * 1000)
        second.write_bytes(b"second file " * 1000)
        with run_server(
            migrated.data_dir, database_url=migrated.env["ASSETD_DATABASE_URL"]
        ) as server:
            migrated.env["ASSETD_URL"] = server.url
            migrated.env["ASSETD_API_KEY"] = secret
            migrated.ok("upload", str(first), str(second))

        report = migrated.report("check", "--verify-hashes")
        assert report == {
            "blobs_checked": 2,
            "missing": [],
            "wrong_size": [],
            "wrong_hash": [],
            "wrong_refcount": [],
            "ok": True,
        }
        blob_files = sorted(p for p in (migrated.data_dir / "blobs").rglob("*") if p.is_file())
        blob_files = [p for p in blob_files if ".staging" not in p.parts]
        assert len(blob_files) == 2
        blob_files[0].unlink()

        result = migrated("check")
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        assert report["ok"] is False
        key = blob_files[0].relative_to(migrated.data_dir / "blobs").as_posix()
        assert report["missing"] == [key]


class TestPackages:
    def test_upload_install_export_through_the_cli(self, cli: Cli, tmp_path: Path) -> None:
        content = b"#!/bin/sh\necho installed\n"
        manifest = {
            "formatVersion": 1,
            "name": "cli-kit",
            "version": "1",
            "entries": [
                {
                    "id": "0190aa00000000000000cc01",
                    "type": "script",
                    "file": {
                        "path": "files/run.sh",
                        "sha256": hashlib.sha256(content).hexdigest(),
                    },
                }
            ],
        }
        package = tmp_path / "kit.zip"
        with zipfile.ZipFile(package, "w") as archive:
            archive.writestr("manifest.json", json.dumps(manifest))
            archive.writestr("files/run.sh", content)
        exported = tmp_path / "out.zip"
        with run_server(cli.data_dir, database_url=cli.env["ASSETD_DATABASE_URL"]) as server:
            cli.env["ASSETD_URL"] = server.url
            cli.env["ASSETD_API_KEY"] = server.key
            report = cli.json("package", "upload", str(package), "--json")
            assert report["report"]["status"] == "READY"
            installed = cli.ok("package", "install", report["id"]).stdout
            assert "INSTALLED (1 created)" in installed
            again = cli.ok("package", "upload", str(package), "--install").stdout
            assert "1 unchanged" in again
            cli.ok("package", "export", "-o", str(exported), "--q", "type:script")
            assert_one_line_error(cli("package", "install", "0" * 24), "404")
        with zipfile.ZipFile(exported) as archive:
            names = archive.namelist()
            assert archive.read(names[1]) == content
