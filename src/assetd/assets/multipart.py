"""multipart/form-data read straight off the socket: text fields kept, one file part streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from assetd.assets.ingest import Ingest, StagedUpload
from assetd.errors import InvalidInput

MAX_FIELD_BYTES = 1024 * 1024
MAX_PARTS = 64


@dataclass
class FormUpload:
    fields: dict[str, str] = field(default_factory=dict)
    staged: StagedUpload | None = None


def decode_header_value(raw: bytes) -> str:
    # Browsers send file names as raw UTF-8 inside the quotes; fall back to latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class _Part:
    def __init__(self) -> None:
        self.headers: dict[str, bytes] = {}
        self.name = ""
        self.filename: str | None = None
        self.data = bytearray()


async def read_multipart(
    chunks: AsyncIterator[bytes],
    content_type: str,
    make_ingest: Callable[[], Ingest],
    *,
    file_field: str = "file",
) -> FormUpload:
    """Parse the body; the part named `file_field` goes through an Ingest, nowhere else."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidInput("multipart/form-data without a boundary parameter")

    events: list[tuple[str, Any]] = []
    header_field = bytearray()
    header_value = bytearray()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        events.append(
            ("header", (bytes(header_field).lower().decode("latin-1"), bytes(header_value)))
        )
        header_field.clear()
        header_value.clear()

    callbacks: Any = {
        "on_part_begin": lambda: events.append(("begin", None)),
        "on_part_data": lambda data, start, end: events.append(("data", data[start:end])),
        "on_part_end": lambda: events.append(("end", None)),
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": lambda: events.append(("headers_done", None)),
    }
    parser = MultipartParser(boundary, callbacks)
    form = FormUpload()
    part: _Part | None = None
    ingest: Ingest | None = None
    parts_seen = 0
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise InvalidInput(f"malformed multipart body: {exc}") from None
            for kind, value in events:
                if kind == "begin":
                    parts_seen += 1
                    if parts_seen > MAX_PARTS:
                        raise InvalidInput(f"more than {MAX_PARTS} parts in the form")
                    part = _Part()
                elif kind == "header" and part is not None:
                    part.headers[value[0]] = value[1]
                elif kind == "headers_done" and part is not None:
                    _, disposition = parse_options_header(part.headers.get("content-disposition"))
                    part.name = decode_header_value(disposition.get(b"name", b""))
                    if b"filename" in disposition:
                        part.filename = decode_header_value(disposition[b"filename"])
                    if part.name == file_field:
                        if ingest is not None or form.staged is not None:
                            raise InvalidInput(f"only one {file_field!r} part is allowed")
                        ingest = make_ingest()
                elif kind == "data" and part is not None:
                    if part.name == file_field and ingest is not None:
                        await ingest.feed(value)
                    else:
                        part.data += value
                        if len(part.data) > MAX_FIELD_BYTES:
                            raise InvalidInput(f"form field {part.name!r} is over 1 MiB")
                elif kind == "end" and part is not None:
                    if part.name == file_field and ingest is not None:
                        form.staged = await ingest.finish(part.filename or "")
                        ingest = None
                    elif part.name:
                        form.fields[part.name] = decode_header_value(bytes(part.data))
                    part = None
            events.clear()
        try:
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidInput(f"malformed multipart body: {exc}") from None
        if ingest is not None:
            raise InvalidInput("the multipart body ended inside the file part")
        return form
    except BaseException:
        # Nothing of a refused or broken upload may stay behind in the blob store.
        if ingest is not None:
            await ingest.abort()
        if form.staged is not None:
            await form.staged.discard()
        raise
