"""Reading a package zip safely, and writing one as a stream.

Everything here is synchronous and runs in a worker thread. A zip is only ever read through
its central directory and decompressed into hashes or the blob store's staging area, never
extracted to a file system, so the checks below are about what the archive claims, what it
really holds, and what it costs to find out.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from assetd.assets.ingest import StagedUpload
from assetd.assets.sniff import SNIFF_BYTES
from assetd.errors import DigestMismatch, Unprocessable
from assetd.packages.manifest import MANIFEST_PATH, Manifest
from assetd.storage.base import READ_CHUNK_BYTES, BlobStorage

# Highly compressible small files (a page of JSON) are harmless whatever their ratio.
RATIO_FLOOR_BYTES = 1024 * 1024
LOCAL_HEADER_BYTES = 30


@dataclass(frozen=True)
class Limits:
    max_members: int
    max_uncompressed_bytes: int
    max_ratio: int
    max_manifest_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """Why a package is refused: a code to act on, a sentence to read, the member concerned."""

    code: str
    message: str
    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "path": self.path}


class PackageRefused(Unprocessable):
    """A hostile or broken package: nothing of it is kept. ``problems`` says what is wrong."""

    title = "Package refused"

    def __init__(self, problems: list[Problem]) -> None:
        shown = "; ".join(p.message for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__(
            f"the package was refused: {shown}{more}",
            problems=[p.as_dict() for p in problems[:1000]],
        )
        self.problems = problems


@dataclass(frozen=True)
class MemberFacts:
    """What a member really holds, measured by reading it."""

    sha256: str
    size_bytes: int
    head: bytes


@dataclass
class Inspection:
    manifest: Manifest
    files: dict[str, MemberFacts]
    # Members the manifest does not name: kept in the artifact, never installed.
    unused: list[str] = field(default_factory=list)


class StorageReader(io.RawIOBase):
    """A seekable, read-only file over one blob, read in ranges (local file or S3 object)."""

    def __init__(self, storage: BlobStorage, key: str, size: int) -> None:
        self._storage = storage
        self._key = key
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._size - self._position)
        if wanted <= 0:
            return 0
        filled = 0
        end = self._position + wanted - 1
        for chunk in self._storage.read(self._key, self._position, end):
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
        self._position += filled
        return filled


def open_package(storage: BlobStorage, key: str, size: int) -> zipfile.ZipFile:
    reader = io.BufferedReader(StorageReader(storage, key, size), buffer_size=READ_CHUNK_BYTES)
    try:
        return zipfile.ZipFile(reader)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise PackageRefused(
            [Problem("not_a_zip", f"the file is not a readable zip: {exc}")]
        ) from None


def inspect(archive: zipfile.ZipFile, limits: Limits) -> Inspection:
    """Check the archive, read its manifest and measure every member the manifest names.

    Raises PackageRefused listing every problem found; nothing is written either way.
    """
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise PackageRefused(
            [
                Problem(
                    "too_many_members",
                    f"the zip has {len(members)} members; at most {limits.max_members} are read",
                )
            ]
        )
    problems = _check_members(members, limits)
    if problems:
        raise PackageRefused(problems)
    by_name = {m.filename: m for m in members if not m.is_dir()}
    manifest = _read_manifest(archive, by_name.get(MANIFEST_PATH), limits)

    problems = []
    wanted: dict[str, str] = {}
    for entry in manifest.entries:
        if entry.file is None:
            continue
        path = entry.file.path
        if path == MANIFEST_PATH or path not in by_name:
            problems.append(
                Problem("member_missing", f"entry {entry.id}: no file {path!r} in the zip", path)
            )
        elif wanted.setdefault(path, entry.file.sha256) != entry.file.sha256:
            problems.append(
                Problem("sha256_mismatch", f"two entries give {path!r} different SHA-256s", path)
            )
    if problems:
        raise PackageRefused(problems)

    files: dict[str, MemberFacts] = {}
    for path, expected in wanted.items():
        try:
            facts = measure(archive, by_name[path])
        except zipfile.BadZipFile as exc:
            problems.append(Problem("corrupt_member", f"{path}: {exc}", path))
            continue
        files[path] = facts
        if facts.sha256 != expected:
            problems.append(
                Problem(
                    "sha256_mismatch",
                    f"{path}: the bytes hash to {facts.sha256}, the manifest says {expected}",
                    path,
                )
            )
    for entry in manifest.entries:
        if entry.file is not None and entry.file.size is not None and entry.file.path in files:
            actual = files[entry.file.path].size_bytes
            if actual != entry.file.size:
                problems.append(
                    Problem(
                        "size_mismatch",
                        f"{entry.file.path}: {actual} bytes, the manifest says {entry.file.size}",
                        entry.file.path,
                    )
                )
    if problems:
        raise PackageRefused(problems)
    unused = sorted(set(by_name) - set(wanted) - {MANIFEST_PATH})
    return Inspection(manifest, files, unused)


def _check_members(members: list[zipfile.ZipInfo], limits: Limits) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    declared_total = 0
    for member in members:
        name = member.orig_filename
        path_problem = _path_problem(name)
        if path_problem is not None:
            problems.append(Problem("unsafe_path", f"{name!r}: {path_problem}", name))
            continue
        folded = unicodedata.normalize("NFC", name.rstrip("/")).casefold()
        if folded in seen:
            problems.append(
                Problem(
                    "duplicate_member",
                    f"{name!r} appears twice (or differs from {seen[folded]!r} only in case "
                    "or Unicode form)",
                    name,
                )
            )
        seen.setdefault(folded, name)
        if member.create_system == 3 and stat.S_ISLNK(member.external_attr >> 16):
            problems.append(Problem("symlink", f"{name!r} is a symbolic link", name))
        if member.flag_bits & 0x1:
            problems.append(Problem("encrypted", f"{name!r} is encrypted", name))
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            problems.append(
                Problem(
                    "unsupported_compression",
                    f"{name!r} uses compression method {member.compress_type}; "
                    "only stored and deflated are read",
                    name,
                )
            )
        declared_total += member.file_size
        if member.file_size > RATIO_FLOOR_BYTES and member.file_size > limits.max_ratio * max(
            member.compress_size, 1
        ):
            problems.append(
                Problem(
                    "compression_ratio",
                    f"{name!r} expands {member.file_size // max(member.compress_size, 1)}-fold; "
                    f"at most {limits.max_ratio} is accepted",
                    name,
                )
            )
    if declared_total > limits.max_uncompressed_bytes:
        problems.append(
            Problem(
                "too_large_uncompressed",
                f"the members expand to {declared_total} bytes; at most "
                f"{limits.max_uncompressed_bytes} are accepted",
            )
        )
    problems.extend(_overlaps(members))
    return problems


def _path_problem(name: str) -> str | None:
    if not name or len(name) > 1024:
        return "a member name must be 1 to 1024 characters"
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return "control characters in the name"
    if "\\" in name:
        return "backslashes in the name (Windows paths are not portable)"
    if name.startswith("/"):
        return "an absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "a drive letter"
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "an empty, '.' or '..' path segment"
    return None


def _overlaps(members: list[zipfile.ZipInfo]) -> list[Problem]:
    """Members whose data overlap: the trick of non-recursive zip bombs, never in real zips."""
    problems = []
    ordered = sorted(members, key=lambda m: m.header_offset)
    for current, following in zip(ordered, ordered[1:], strict=False):
        end = (
            current.header_offset
            + LOCAL_HEADER_BYTES
            + len(current.orig_filename.encode("utf-8", "surrogateescape"))
            + current.compress_size
        )
        if following.header_offset < end:
            problems.append(
                Problem(
                    "overlapping_members",
                    f"{following.orig_filename!r} overlaps the data of {current.orig_filename!r}",
                    following.orig_filename,
                )
            )
    return problems


def _read_manifest(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo | None, limits: Limits
) -> Manifest:
    if member is None:
        raise PackageRefused(
            [Problem("manifest_missing", f"no {MANIFEST_PATH} at the root of the zip")]
        )
    if member.file_size > limits.max_manifest_bytes:
        raise PackageRefused(
            [
                Problem(
                    "manifest_invalid",
                    f"{MANIFEST_PATH} is {member.file_size} bytes; at most "
                    f"{limits.max_manifest_bytes} are read",
                    MANIFEST_PATH,
                )
            ]
        )
    try:
        with archive.open(member) as stream:
            raw = stream.read(limits.max_manifest_bytes + 1)
        data = json.loads(raw)
    except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageRefused(
            [Problem("manifest_invalid", f"{MANIFEST_PATH} is not JSON: {exc}", MANIFEST_PATH)]
        ) from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise PackageRefused(
            [
                Problem(
                    "manifest_invalid",
                    f"{MANIFEST_PATH}: {'.'.join(str(p) for p in error['loc']) or '(root)'}: "
                    f"{error['msg']}",
                    MANIFEST_PATH,
                )
                for error in exc.errors()[:100]
            ]
        ) from None


def _chunks(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> Iterator[bytes]:
    """The member's bytes; never more than its header claims (a lying header is corrupt)."""
    total = 0
    with archive.open(member) as stream:
        while chunk := stream.read(READ_CHUNK_BYTES):
            total += len(chunk)
            if total > member.file_size:
                raise zipfile.BadZipFile("more bytes than the zip's directory declares")
            yield chunk


def measure(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> MemberFacts:
    digest = hashlib.sha256()
    head = b""
    size = 0
    for chunk in _chunks(archive, member):
        if len(head) < SNIFF_BYTES:
            head += chunk[: SNIFF_BYTES - len(head)]
        digest.update(chunk)
        size += len(chunk)
    return MemberFacts(digest.hexdigest(), size, head)


def stage_member(
    archive: zipfile.ZipFile, path: str, expected_sha256: str, storage: BlobStorage, filename: str
) -> StagedUpload:
    """Copy one member into the blob store's staging area, hashed and verified again (the
    artifact is only trusted as far as its bytes still match what the report saw)."""
    member = archive.getinfo(path)
    writer = storage.writer()
    try:
        sha256 = hashlib.sha256()
        md5 = hashlib.md5(usedforsecurity=False)
        head = b""
        size = 0
        for chunk in _chunks(archive, member):
            if len(head) < SNIFF_BYTES:
                head += chunk[: SNIFF_BYTES - len(head)]
            sha256.update(chunk)
            md5.update(chunk)
            writer.write(chunk)
            size += len(chunk)
        if sha256.hexdigest() != expected_sha256:
            raise DigestMismatch(f"{path}: the package's bytes changed since it was reported")
        writer.seal()
    except BaseException:
        writer.abort()
        raise
    return StagedUpload(
        writer=writer,
        sha256=sha256.hexdigest(),
        md5=md5.hexdigest(),
        size_bytes=size,
        head=head,
        filename=filename,
    )


class _Spool(io.RawIOBase):
    """The write end of a streamed zip: collects what zipfile writes until it is taken."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._offset += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        # zipfile asks where it is to record member offsets; it never seeks (not seekable).
        return self._offset

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


@dataclass(frozen=True)
class OutMember:
    """A member of a package being written: its name, and where its bytes come from."""

    path: str
    size_bytes: int
    key: str | None = None
    data: bytes | None = None
    compress: bool = False


def write_zip(storage: BlobStorage, members: list[OutMember]) -> Iterator[bytes]:
    """The zip, a piece at a time: memory holds one read chunk, never the whole archive.

    On a stream zipfile writes each member's sizes and CRC after its data (data
    descriptors), so nothing has to be known, or rewritten, in advance.
    """
    spool = _Spool()
    with zipfile.ZipFile(spool, "w", allowZip64=True) as archive:
        for member in members:
            info = zipfile.ZipInfo(member.path, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if member.compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.file_size = member.size_bytes
            with archive.open(info, "w", force_zip64=member.size_bytes > 2**31) as out:
                if member.data is not None:
                    out.write(member.data)
                elif member.key is not None:
                    for chunk in storage.read(member.key):
                        out.write(chunk)
                        if data := spool.take():
                            yield data
            if data := spool.take():
                yield data
    if data := spool.take():
        yield data
