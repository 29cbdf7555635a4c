"""Facts about a file, read from its headers: pure functions, a path in and a JSON-able dict out.

The facts are stored on the version and queried as ``facts.*``, so keys are camelCase and a
fact that cannot be read is left out rather than guessed. Everything here runs on hostile
input: parsers are bounded in size, external tools in time and output, and every failure
becomes an ``ExtractionError``.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import olefile  # type: ignore[import-untyped]
import pypdfium2  # type: ignore[import-untyped]
import pyvips  # type: ignore[import-untyped]
from pyaxmlparser import APK  # type: ignore[import-untyped]

__all__ = ["MAX_IMAGE_PIXELS", "ExtractionError", "extract_facts"]

# Far beyond any camera or scan, yet a header claiming more is the signature of a
# decompression bomb aimed at whoever renders it next.
MAX_IMAGE_PIXELS = 500_000_000
# AndroidManifest.xml is kilobytes and resources.arsc rarely passes a few megabytes; the
# parser reads both whole, so a zip bomb in either must be refused before it inflates.
_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_MAX_ARSC_BYTES = 64 * 1024 * 1024
# The MSI Property table and its string pool are read whole; real ones are kilobytes.
_MAX_MSI_STREAM_BYTES = 32 * 1024 * 1024
_TOOL_TIMEOUT_SECONDS = 30.0
_MAX_TOOL_OUTPUT_BYTES = 1024 * 1024

Facts = dict[str, Any]


class ExtractionError(ValueError):
    """The file is corrupt, truncated or hostile; no facts can be trusted."""


def extract_facts(path: Path, mime_type: str) -> Facts:
    """Facts for ``path`` by its sniffed MIME type; ``{}`` for types we know nothing about
    (those of which kinds.has_facts() says no: they get no extract job)."""
    mime = mime_type.split(";", 1)[0].strip().lower()
    extractor = _EXTRACTORS.get(mime)
    if extractor is None:
        return _video_facts(path, mime) if mime.startswith("video/") else {}
    return extractor(path, mime)


# -- images ------------------------------------------------------------------------------

# The loader is chosen by the sniffed type rather than left to libvips, so a file can't
# steer itself into a loader the sniffer never agreed to.
_IMAGE_LOADERS = {
    "image/jpeg": "jpegload",
    "image/png": "pngload",
    "image/gif": "gifload",
    "image/webp": "webpload",
    "image/tiff": "tiffload",
    "image/heic": "heifload",
    "image/heif": "heifload",
    "image/heic-sequence": "heifload",
    "image/heif-sequence": "heifload",
    "image/avif": "heifload",
}
_ANIMATED_LOADERS = {"gifload", "webpload"}
_ASCII_TAIL = re.compile(r", ASCII, \d+ components, \d+ bytes\)\Z")
_OFFSET = re.compile(r"[+-]\d{2}:\d{2}\Z")


def _image_facts(path: Path, mime_type: str) -> Facts:
    loader = _IMAGE_LOADERS[mime_type]
    try:
        # Loaders only parse the header here; pixels would be decoded on first access,
        # which this function never makes.
        image = getattr(pyvips.Image, loader)(str(path), access="sequential")
        fields = set(image.get_fields())
        width, height = int(image.width), int(image.height)
        facts: Facts = {"width": width, "height": height}
        if width * height > MAX_IMAGE_PIXELS:
            raise ExtractionError(
                f"image of {width}x{height} pixels exceeds the {MAX_IMAGE_PIXELS} pixel limit"
            )
        orientation = int(image.get("orientation")) if "orientation" in fields else 1
        facts["orientation"] = orientation if 1 <= orientation <= 8 else 1
        frames = 1
        if loader in _ANIMATED_LOADERS and "n-pages" in fields:
            frames = max(1, int(image.get("n-pages")))
        facts["frames"] = frames
        exif = {name: str(image.get(name)) for name in fields if name.startswith("exif-ifd")}
    except pyvips.Error as exc:
        # libvips puts the cause ("premature end of JPEG image") in detail, not in message.
        detail = _first_line(exc.detail or exc.message)
        raise ExtractionError(f"unreadable {mime_type} image: {detail}") from exc
    facts.update(_exif_facts(exif))
    return facts


def _exif_facts(exif: dict[str, str]) -> Facts:
    facts: Facts = {}
    camera = {
        key: value
        for key, field in (("make", "exif-ifd0-Make"), ("model", "exif-ifd0-Model"))
        if (value := _exif_ascii(exif.get(field)))
    }
    if camera:
        facts["camera"] = camera
    taken_at = _exif_datetime(
        _exif_ascii(exif.get("exif-ifd2-DateTimeOriginal")),
        _exif_ascii(exif.get("exif-ifd2-OffsetTimeOriginal")),
    )
    if taken_at:
        facts["takenAt"] = taken_at
    latitude = _exif_coordinate(
        exif.get("exif-ifd3-GPSLatitude"), _exif_ascii(exif.get("exif-ifd3-GPSLatitudeRef"))
    )
    longitude = _exif_coordinate(
        exif.get("exif-ifd3-GPSLongitude"), _exif_ascii(exif.get("exif-ifd3-GPSLongitudeRef"))
    )
    if (
        latitude is not None
        and longitude is not None
        and abs(latitude) <= 90
        and abs(longitude) <= 180
    ):
        facts["gps"] = {"latitude": latitude, "longitude": longitude}
    return facts


def _exif_ascii(raw: str | None) -> str | None:
    """The text of an ASCII tag, from libvips' ``"<value> (<value>, ASCII, n components, …)"``."""
    if raw is None:
        return None
    tail = _ASCII_TAIL.search(raw)
    if tail is None:
        value = raw.split(" (", 1)[0]
    else:
        # The value is printed twice, so its length is known even when it contains " (",
        # which a plain split would cut short.
        head = raw[: tail.start()]
        value = head[: (len(head) - 2) // 2]
        if head != f"{value} ({value}":
            value = head.split(" (", 1)[0]
    return value.strip().strip("\x00").strip() or None


def _exif_datetime(value: str | None, offset: str | None) -> str | None:
    if value is None:
        return None
    try:
        taken = datetime.strptime(value[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        # Cameras without a clock write "0000:00:00 00:00:00" or blanks: no fact.
        return None
    iso = taken.isoformat()
    if offset and _OFFSET.match(offset):
        iso += offset
    return iso


def _exif_coordinate(raw: str | None, ref: str | None) -> float | None:
    """Signed decimal degrees from ``"52/1 31/1 1200/100 (…)"`` and an N/S/E/W reference."""
    if raw is None:
        return None
    parts = raw.split(" (", 1)[0].split()
    if len(parts) != 3:
        return None
    degrees = 0.0
    for part, scale in zip(parts, (1, 60, 3600), strict=True):
        numerator, _, denominator = part.partition("/")
        try:
            num, den = int(numerator), int(denominator or "1")
        except ValueError:
            return None
        if den == 0:
            return None
        degrees += num / den / scale
    if not math.isfinite(degrees):
        return None
    if ref and ref.upper()[:1] in ("S", "W"):
        degrees = -degrees
    return round(degrees, 7)


# -- Android APK -------------------------------------------------------------------------


def _apk_facts(path: Path, mime_type: str) -> Facts:
    try:
        with zipfile.ZipFile(path) as archive:
            manifest = archive.getinfo("AndroidManifest.xml")
            arsc_size = _zip_member_size(archive, "resources.arsc")
    except KeyError as exc:
        raise ExtractionError("not an APK: no AndroidManifest.xml") from exc
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ExtractionError(f"not an APK: {exc}") from exc
    # zipfile never inflates past a member's declared size, so checking that size bounds
    # the memory pyaxmlparser's whole-member reads can take.
    if manifest.file_size > _MAX_MANIFEST_BYTES or arsc_size > _MAX_ARSC_BYTES:
        raise ExtractionError("APK manifest or resource table is implausibly large")
    try:
        apk = APK(str(path))
        if not apk.is_valid_APK():
            raise ExtractionError("APK has no readable binary manifest")
        package = apk.package
        version_code = apk.version_code
        version_name = apk.version_name
        min_sdk = apk.get_min_sdk_version()
        target_sdk = apk.get_target_sdk_version()
        label = apk.get_app_name()
    except ExtractionError:
        raise
    except Exception as exc:
        # pyaxmlparser reports malformed input with whatever its parsing trips over
        # (KeyError, struct.error, IndexError, …), so nothing narrower catches them all.
        raise ExtractionError(f"unreadable APK: {type(exc).__name__}: {exc}") from exc
    facts: Facts = {}
    if package:
        facts["packageName"] = str(package)
    for key, value in (
        ("versionCode", version_code),
        ("minSdkVersion", min_sdk),
        ("targetSdkVersion", target_sdk),
    ):
        number = _int_or_none(value)
        if number is not None:
            facts[key] = number
    if version_name:
        facts["versionName"] = str(version_name)
    # A label still starting with "@" is a reference pyaxmlparser could not resolve (to
    # the framework's resources, say); that is not the product's name.
    if label and not str(label).startswith("@"):
        facts["productName"] = str(label)
    return facts


def _zip_member_size(archive: zipfile.ZipFile, name: str) -> int:
    try:
        return archive.getinfo(name).file_size
    except KeyError:
        return 0


def _int_or_none(value: object) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError:
        return None


# -- Windows MSI -------------------------------------------------------------------------

_MSI_PROPERTIES = {
    "ProductCode": "productCode",
    "ProductVersion": "productVersion",
    "ProductName": "productName",
    "Manufacturer": "manufacturer",
}
# MSI packs stream names into CJK code points, two name characters per code point
# (0x3800–0x47FF), one for a trailing odd character (0x4800–0x483F); 0x4840 marks tables.
_MSI_NAME_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._"


def _msi_facts(path: Path, mime_type: str) -> Facts:
    """The Property table, read with olefile: no Windows, no external tool."""
    try:
        if not olefile.isOleFile(str(path)):
            raise ExtractionError("not an MSI: not an OLE compound file")
        with olefile.OleFileIO(str(path)) as ole:
            streams = {_msi_stream_name(entry[-1]): entry for entry in ole.listdir()}
            wanted = ("!_StringPool", "!_StringData", "!Property")
            if not all(name in streams for name in wanted):
                raise ExtractionError("not an MSI: no Property table")
            blobs = {}
            for name in wanted:
                if ole.get_size(streams[name]) > _MAX_MSI_STREAM_BYTES:
                    raise ExtractionError(f"MSI stream {name} is implausibly large")
                blobs[name] = ole.openstream(streams[name]).read()
    except ExtractionError:
        raise
    except Exception as exc:
        # olefile signals malformed sectors and chains with assorted exception types.
        raise ExtractionError(f"unreadable MSI: {type(exc).__name__}: {exc}") from exc
    properties = _msi_properties(blobs["!_StringPool"], blobs["!_StringData"], blobs["!Property"])
    return {key: properties[name] for name, key in _MSI_PROPERTIES.items() if properties.get(name)}


def _msi_stream_name(encoded: str) -> str:
    chars = []
    for char in encoded:
        code = ord(char)
        if 0x3800 <= code < 0x4800:
            code -= 0x3800
            chars.append(_MSI_NAME_ALPHABET[code & 0x3F] + _MSI_NAME_ALPHABET[(code >> 6) & 0x3F])
        elif 0x4800 <= code < 0x4840:
            chars.append(_MSI_NAME_ALPHABET[code - 0x4800])
        elif code == 0x4840:
            chars.append("!")
        else:
            chars.append(char)
    return "".join(chars)


def _msi_properties(pool: bytes, data: bytes, table: bytes) -> dict[str, str]:
    strings, ref_width = _msi_strings(pool, data)
    row_bytes = 2 * ref_width
    if len(table) % row_bytes:
        raise ExtractionError("MSI Property table has a partial row")
    rows = len(table) // row_bytes
    # Tables are stored column by column: every key first, then every value.
    column = rows * ref_width

    def ref(offset: int) -> str:
        index = int.from_bytes(table[offset : offset + ref_width], "little")
        if index >= len(strings):
            raise ExtractionError("MSI Property table points outside the string pool")
        return strings[index]

    return {ref(row * ref_width): ref(column + row * ref_width) for row in range(rows)}


def _msi_strings(pool: bytes, data: bytes) -> tuple[list[str], int]:
    """The string pool as a list indexed by string id (0 is the empty string)."""
    if len(pool) < 4 or len(pool) % 4:
        raise ExtractionError("MSI string pool is malformed")
    header = struct.unpack_from("<I", pool)[0]
    # The high bit says string ids are three bytes wide, used once a pool passes 64K.
    ref_width = 3 if header & 0x80000000 else 2
    encoding = _msi_codec(header & 0x7FFFFFFF)
    entries = struct.unpack_from(f"<{len(pool) // 2 - 2}H", pool, 4)
    strings = [""]
    offset = 0
    index = 0
    while index + 1 < len(entries):
        length, refcount = entries[index], entries[index + 1]
        index += 2
        if length == 0 and refcount != 0:
            # A string of 64K or more: this entry is a marker and the next one holds the
            # length's low and high words.
            if index + 1 >= len(entries):
                raise ExtractionError("MSI string pool is truncated")
            length = entries[index] | (entries[index + 1] << 16)
            index += 2
        if offset + length > len(data):
            raise ExtractionError("MSI string pool runs past its data")
        strings.append(data[offset : offset + length].decode(encoding, errors="replace"))
        offset += length
    return strings, ref_width


def _msi_codec(codepage: int) -> str:
    # Codepage 0 is "neutral": Windows reads it in the system's ANSI codepage, which for the
    # MSIs wixl and most Western builders make is Windows-1252.
    if codepage == 0:
        return "cp1252"
    try:
        return codecs.lookup("utf-8" if codepage == 65001 else f"cp{codepage}").name
    except LookupError:
        return "cp1252"


# -- PDF ---------------------------------------------------------------------------------


def _pdf_facts(path: Path, mime_type: str) -> Facts:
    try:
        document = pypdfium2.PdfDocument(str(path))
    except pypdfium2.PdfiumError as exc:
        if exc.err_code == pypdfium2.raw.FPDF_ERR_PASSWORD:
            # Opening needs the user password, so only the fact of encryption is known.
            return {"encrypted": True}
        raise ExtractionError(f"unreadable PDF: {exc}") from exc
    try:
        facts: Facts = {
            "pages": len(document),
            "encrypted": pypdfium2.raw.FPDF_GetSecurityHandlerRevision(document) != -1,
        }
        metadata = document.get_metadata_dict(skip_empty=True)
    except pypdfium2.PdfiumError as exc:
        raise ExtractionError(f"unreadable PDF: {exc}") from exc
    finally:
        document.close()
    for key, name in (("title", "Title"), ("author", "Author")):
        if value := str(metadata.get(name, "")).strip():
            facts[key] = value
    return facts


# -- video -------------------------------------------------------------------------------

# Containers ffprobe may open. Playlists (hls, concat, …) are left out on purpose: they make
# ffprobe open further files or URLs named inside a hostile upload.
_VIDEO_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,mxf,h264,hevc,m4v,"
    "rawvideo,dv,gif,yuv4mpegpipe"
)


def _video_facts(path: Path, mime_type: str) -> Facts:
    """Duration, size and codecs from ffprobe; ``{}`` when ffprobe is not installed."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return {}
    output = _run_bounded(
        [
            ffprobe,
            "-v",
            "error",
            "-protocol_whitelist",
            "file",
            "-format_whitelist",
            _VIDEO_FORMATS,
            "-print_format",
            "json",
            "-show_entries",
            "format=duration:stream=codec_type,codec_name,width,height",
            # "file:" keeps a name such as "concat:x" from being read as a protocol.
            f"file:{path.resolve()}",
        ]
    )
    try:
        probe = json.loads(output)
    except ValueError as exc:
        raise ExtractionError("ffprobe printed something other than JSON") from exc
    streams = probe.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise ExtractionError("no audio or video streams")
    facts: Facts = {}
    duration = _float_or_none((probe.get("format") or {}).get("duration"))
    if duration is not None:
        facts["durationSeconds"] = duration
    if video is not None:
        for key in ("width", "height"):
            if isinstance(video.get(key), int) and video[key] > 0:
                facts[key] = video[key]
        if video.get("codec_name"):
            facts["videoCodec"] = str(video["codec_name"])
    if audio is not None and audio.get("codec_name"):
        facts["audioCodec"] = str(audio["codec_name"])
    return facts


def _float_or_none(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _run_bounded(args: list[str]) -> str:
    """Run a tool without a shell, killed after a timeout, its output capped."""
    # Output goes to a file rather than a pipe so that the cap is checked without
    # holding an unbounded amount in memory.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=_TOOL_TIMEOUT_SECONDS,
                check=False,
                env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired as exc:
            raise ExtractionError(f"{Path(args[0]).name} timed out") from exc
        if result.returncode != 0:
            err.seek(0)
            detail = _first_line(err.read(2000).decode("utf-8", errors="replace"))
            raise ExtractionError(f"{Path(args[0]).name} failed: {detail}")
        size = out.tell()
        if size > _MAX_TOOL_OUTPUT_BYTES:
            raise ExtractionError(f"{Path(args[0]).name} printed {size} bytes")
        out.seek(0)
        return out.read().decode("utf-8", errors="replace")


def _first_line(message: object) -> str:
    text = str(message).strip()
    return text.splitlines()[0] if text else "no detail"


_EXTRACTORS: dict[str, Callable[[Path, str], Facts]] = {
    **{mime: _image_facts for mime in _IMAGE_LOADERS},
    "application/vnd.android.package-archive": _apk_facts,
    "application/x-msi": _msi_facts,
    "application/x-ms-installer": _msi_facts,
    "application/vnd.ms-msi": _msi_facts,
    "application/pdf": _pdf_facts,
}
