"""A clamd client for the INSTREAM command (ClamAV's own socket protocol, no library).

The bytes go in chunks, each prefixed by its length; clamd answers `stream: OK` or
`stream: <signature> FOUND`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

CHUNK_BYTES = 256 * 1024
TIMEOUT_SECONDS = 120.0
MAX_REPLY_BYTES = 4096


class ClamdError(Exception):
    """clamd could not be reached or answered something other than a verdict."""


@dataclass(frozen=True)
class Verdict:
    infected: bool
    signature: str | None = None


def connect(url: str, timeout: float = TIMEOUT_SECONDS) -> socket.socket:
    """unix:///path/to/clamd.ctl or tcp://host:port."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(parts.path)
            except OSError:
                sock.close()
                raise
        elif parts.scheme == "tcp" and parts.hostname:
            sock = socket.create_connection((parts.hostname, parts.port or 3310), timeout=timeout)
        else:
            raise ClamdError(f"unsupported clamd URL {url!r}: use unix:///path or tcp://host:port")
    except OSError as exc:
        raise ClamdError(f"clamd at {url} is unreachable: {exc}") from exc
    return sock


def scan(url: str, chunks: Iterable[bytes]) -> Verdict:
    with connect(url) as sock:
        try:
            sock.sendall(b"zINSTREAM\0")
            for chunk in chunks:
                for start in range(0, len(chunk), CHUNK_BYTES):
                    piece = chunk[start : start + CHUNK_BYTES]
                    sock.sendall(struct.pack(">I", len(piece)) + piece)
            sock.sendall(struct.pack(">I", 0))
            reply = _read_reply(sock)
        except OSError as exc:
            # clamd closes the stream early when the file exceeds its StreamMaxLength.
            raise ClamdError(f"clamd failed during the scan: {exc}") from exc
    return parse_reply(reply)


def parse_reply(reply: str) -> Verdict:
    text = reply.strip("\0").strip()
    if text.endswith(" FOUND"):
        signature = text.removeprefix("stream:").removesuffix(" FOUND").strip()
        return Verdict(True, signature or "unknown")
    if text == "stream: OK":
        return Verdict(False)
    raise ClamdError(f"clamd answered {text[:200]!r}")


def ping(url: str) -> bool:
    try:
        with connect(url, timeout=5) as sock:
            sock.sendall(b"zPING\0")
            return _read_reply(sock).strip("\0") == "PONG"
    except (OSError, ClamdError):
        return False


def _read_reply(sock: socket.socket) -> str:
    reply = b""
    while not reply.endswith(b"\0") and len(reply) < MAX_REPLY_BYTES:
        data = sock.recv(MAX_REPLY_BYTES)
        if not data:
            break
        reply += data
    return reply.decode("utf-8", "replace")
