"""Rendition images from stored files: pure functions, a path in and encoded bytes out.

Everything here runs on hostile input. The header is read and its pixel count checked before
any pixel is decoded (decompression bombs); libvips shrinks on load, so a large photo is
never decoded at full size; PDFs are rendered at the size wanted, not at their own; video
posters come from ffmpeg without a shell, under a timeout, with only local files allowed.
Every failure becomes an ``ImagingError``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pypdfium2  # type: ignore[import-untyped]
import pyvips  # type: ignore[import-untyped]

__all__ = [
    "FITS",
    "FORMATS",
    "MAX_INPUT_PIXELS",
    "MAX_OUTPUT_SIDE",
    "PRESETS",
    "ImagingError",
    "RenditionImage",
    "can_render",
    "configure_vips",
    "make_preset",
    "make_presets",
    "transform",
]

# Long side in pixels of each named preset (seed 003: thumb, medium, large, largeX2).
PRESETS: dict[str, int] = {"thumb": 150, "medium": 480, "large": 1024, "largeX2": 2048}
# Far beyond a phone camera (~50 MP), yet small enough that a header claiming more is refused
# before libvips sets out to decode it.
MAX_INPUT_PIXELS = 100_000_000
MAX_OUTPUT_SIDE = 4096
FITS = ("cover", "contain", "inside")
FORMATS = ("jpeg", "webp", "png", "avif")
DEFAULT_QUALITY = 80

Fit = Literal["cover", "contain", "inside"]
Format = Literal["jpeg", "webp", "png", "avif"]

_MIME_OF_FORMAT = {
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "png": "image/png",
    "avif": "image/avif",
}
# The loader is chosen by the sniffed type, so a file can't steer itself into a loader the
# sniffer never agreed to (libvips would otherwise pick one by the bytes).
_IMAGE_LOADERS = {
    "image/jpeg": "jpegload",
    "image/png": "pngload",
    "image/gif": "gifload",
    "image/webp": "webpload",
    "image/tiff": "tiffload",
    "image/heic": "heifload",
    "image/heif": "heifload",
    "image/avif": "heifload",
}
_PDF = "application/pdf"
# libjpeg's smallest DCT scale: 1/8, where each 8×8 block decodes to its mean (DC) alone.
_JPEG_DC_SHRINK = 8
# Containers ffmpeg may open for a poster; playlists (hls, concat, …) stay out because they
# make ffmpeg open further files or URLs named inside the upload.
_VIDEO_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,mxf,h264,hevc,m4v,"
    "rawvideo,dv,yuv4mpegpipe"
)
_FFMPEG_TIMEOUT_SECONDS = 30.0
_MAX_POSTER_BYTES = 64 * 1024 * 1024
# PDF pages are rendered so that their long side is this many pixels at most.
_MAX_PDF_RENDER_SIDE = max(PRESETS.values())


@dataclass(frozen=True)
class RenditionImage:
    data: bytes
    mime_type: str
    width: int
    height: int


class ImagingError(ValueError):
    """The file is corrupt, truncated, hostile or of a kind that has no renditions."""


def configure_vips() -> None:
    """Process-wide libvips settings: call once at start-up (serve and worker), not on import."""
    # Loaders libvips marks untrusted (ImageMagick, matio, …) are never reachable from uploads.
    pyvips.block_untrusted_set(True)
    # Every rendition reads a different file once: the operation cache would only hold memory.
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    if "VIPS_CONCURRENCY" not in os.environ:
        # One thread per image: the cores are shared out between requests and jobs (serve
        # workers × transform_concurrency), and the JPEG decode that dominates is serial. On 2
        # cores a 256 px thumbnail then costs ~3% less CPU (18.6 against 19.2 ms) and all four
        # presets of a 3000×2000 photo take no longer. An operator's VIPS_CONCURRENCY wins.
        pyvips.concurrency_set(1)


def can_render(mime_type: str) -> bool:
    """Whether files of this sniffed type get renditions (images, PDFs, videos)."""
    mime = _bare(mime_type)
    return mime in _IMAGE_LOADERS or mime == _PDF or mime.startswith("video/")


def make_preset(path: Path, mime_type: str, preset: str, fmt: Format = "webp") -> RenditionImage:
    """One named preset: the long side shrunk to the preset's size, never enlarged."""
    return make_presets(path, mime_type, [preset], fmt)[preset]


def make_presets(
    path: Path, mime_type: str, presets: Iterable[str], fmt: Format = "webp"
) -> dict[str, RenditionImage]:
    """Several presets from one source, which for PDFs and videos is rendered only once."""
    wanted = list(presets)
    for preset in wanted:
        if preset not in PRESETS:
            raise ImagingError(f"unknown preset {preset!r}")
    if fmt not in FORMATS:
        raise ImagingError(f"unknown format {fmt!r}")
    source = _Source.open(path, mime_type)
    results = {}
    for preset in wanted:
        size = PRESETS[preset]
        image = _run_vips(lambda s=size: source.thumbnail(s, s, size="down"))
        results[preset] = _encode(image, fmt, DEFAULT_QUALITY)
    return results


def transform(
    path: Path,
    mime_type: str,
    width: int | None,
    height: int | None,
    fit: Fit = "inside",
    fmt: Format = "webp",
    quality: int = DEFAULT_QUALITY,
) -> RenditionImage:
    """An ad-hoc rendition.

    ``cover`` fills width×height exactly and crops the overflow around the centre;
    ``contain`` fits the whole image in and pads it to exactly width×height; ``inside`` fits
    it in without padding and never enlarges. With one side only, the other follows the
    aspect ratio (never enlarged).
    """
    check_transform(width, height, fit, fmt, quality)
    source = _Source.open(path, mime_type)
    if width is None or height is None:
        side_w = width or MAX_OUTPUT_SIDE
        side_h = height or MAX_OUTPUT_SIDE
        image = _run_vips(lambda: source.thumbnail(side_w, side_h, size="down"))
    elif fit == "cover":
        image = _run_vips(lambda: source.thumbnail(width, height, size="both", crop="centre"))
    elif fit == "contain":

        def contained() -> Any:
            inner = source.thumbnail(width, height, size="both")
            background = [255] * inner.bands if fmt == "jpeg" else [0] * inner.bands
            if fmt != "jpeg" and not inner.hasalpha():
                inner = inner.bandjoin(255)
                background = [0] * inner.bands
            return inner.gravity(
                "centre", width, height, extend="background", background=background
            )

        image = _run_vips(contained)
    else:
        image = _run_vips(lambda: source.thumbnail(width, height, size="down"))
    return _encode(image, fmt, quality)


def check_transform(
    width: int | None, height: int | None, fit: str, fmt: str, quality: int
) -> None:
    """ValueError (an ImagingError) for a transformation outside the limits."""
    if width is None and height is None:
        raise ImagingError("give a width, a height or both")
    for name, side in (("width", width), ("height", height)):
        if side is not None and not 1 <= side <= MAX_OUTPUT_SIDE:
            raise ImagingError(f"{name} must be between 1 and {MAX_OUTPUT_SIDE}")
    if fit not in FITS:
        raise ImagingError(f"fit must be one of {', '.join(FITS)}")
    if fmt not in FORMATS:
        raise ImagingError(f"format must be one of {', '.join(FORMATS)}")
    if not 1 <= quality <= 100:
        raise ImagingError("quality must be between 1 and 100")


# -- sources -----------------------------------------------------------------------------


class _Source:
    """What renditions are shrunk from: an image file (shrink-on-load) or a decoded bitmap."""

    def __init__(self, path: Path | None, bitmap: Any, header: _Header | None = None) -> None:
        self.path = path
        self.bitmap = bitmap
        self.header = header

    @classmethod
    def open(cls, path: Path, mime_type: str) -> _Source:
        mime = _bare(mime_type)
        if mime in _IMAGE_LOADERS:
            return cls(path, None, _check_image_header(path, mime))
        if mime == _PDF:
            return cls(None, _render_pdf_page(path))
        if mime.startswith("video/"):
            return cls(None, _video_poster(path))
        raise ImagingError(f"{mime or 'this type'} has no renditions")

    def thumbnail(self, width: int, height: int, **options: Any) -> Any:
        if self.path is None:
            return self.bitmap.thumbnail_image(width, height=height, **options)
        if self._dc_scale_covers(width, height, cover="crop" in options):
            # For a target between 1/16 and 1/8 of the picture, thumbnail() decodes at 1/4 (it
            # keeps a factor of two for its own resize); at 1/8 the JPEG costs ~20% less CPU
            # (on 3000×2000 → 256 px: ~17.5 instead of ~22.5 ms). Each 8×8 block then becomes
            # its mean, a box filter, and the resize after it only shrinks: the thumbnail is
            # within ~2 dB PSNR (47.7 against 49.6 dB, both measured against a full decode
            # resized with lanczos3) of thumbnail()'s, and is what Pillow's draft() (thumbor)
            # makes. The 1/4 and 1/2 scales are not taken early: their truncated IDCT is blocky
            # (5-10 dB worse at 700-1400 px), so thumbnail() keeps its own choice there.
            # thumbnail_image() resizes, crops and applies the EXIF orientation as thumbnail()
            # would.
            image = pyvips.Image.jpegload(
                str(self.path), shrink=_JPEG_DC_SHRINK, access="sequential", fail_on="truncated"
            )
            return image.thumbnail_image(width, height=height, **options)
        # thumbnail() picks the loader's shrink-on-load and applies EXIF orientation;
        # fail_on makes a truncated file an error rather than a grey-padded picture.
        return pyvips.Image.thumbnail(
            str(self.path), width, height=height, fail_on="truncated", **options
        )

    def _dc_scale_covers(self, width: int, height: int, *, cover: bool) -> bool:
        """Whether a JPEG decoded at 1/8 still covers the target box (no enlarging after)."""
        header = self.header
        if header is None or not header.jpeg:
            return False
        # The box is for the picture as shown: a rotating orientation swaps the stored sides.
        shown_w, shown_h = (
            (header.height, header.width) if header.swapped else (header.width, header.height)
        )
        scales = (width / shown_w, height / shown_h)
        scale = max(scales) if cover else min(scales)
        return scale * _JPEG_DC_SHRINK <= 1


@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    jpeg: bool
    # EXIF orientations 5-8 turn the picture by 90°: its shown width is the stored height.
    swapped: bool


def _check_image_header(path: Path, mime: str) -> _Header:
    loader = _IMAGE_LOADERS[mime]
    try:
        # Only the header is parsed here; pixels would be decoded on first access.
        header = getattr(pyvips.Image, loader)(str(path), access="sequential")
        width, height = int(header.width), int(header.height)
        orientation = int(header.get("orientation")) if header.get_typeof("orientation") != 0 else 1
    except pyvips.Error as exc:
        raise ImagingError(f"unreadable {mime} image: {_detail(exc)}") from exc
    _check_pixels(width, height)
    return _Header(width, height, loader == "jpegload", orientation in (5, 6, 7, 8))


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_INPUT_PIXELS:
        raise ImagingError(
            f"image of {width}x{height} pixels exceeds the {MAX_INPUT_PIXELS} pixel limit"
        )


def _render_pdf_page(path: Path) -> Any:
    """Page 1 rendered with pdfium so that its long side is _MAX_PDF_RENDER_SIDE pixels."""
    try:
        document = pypdfium2.PdfDocument(str(path))
    except pypdfium2.PdfiumError as exc:
        raise ImagingError(f"unreadable PDF: {exc}") from exc
    try:
        if len(document) < 1:
            raise ImagingError("the PDF has no pages")
        page = document[0]
        try:
            page_width, page_height = page.get_size()
            long_side = max(page_width, page_height)
            if not long_side > 0:
                raise ImagingError("the PDF's first page has no size")
            scale = _MAX_PDF_RENDER_SIDE / long_side
            bitmap = page.render(scale=scale, rev_byteorder=True, fill_color=(255, 255, 255, 255))
            try:
                width, height, stride = bitmap.width, bitmap.height, bitmap.stride
                bands = bitmap.n_channels
                # Rows may carry padding; copy them out tightly for libvips.
                raw = bytes(bitmap.buffer)
                if stride != width * bands:
                    raw = b"".join(
                        raw[row * stride : row * stride + width * bands] for row in range(height)
                    )
            finally:
                bitmap.close()
        finally:
            page.close()
    except pypdfium2.PdfiumError as exc:
        raise ImagingError(f"unreadable PDF: {exc}") from exc
    finally:
        document.close()
    _check_pixels(width, height)
    image = pyvips.Image.new_from_memory(raw, width, height, bands, "uchar")
    if bands == 4:
        image = image.extract_band(0, n=3)
    return image.copy(interpretation="srgb" if bands >= 3 else "b-w")


def _video_poster(path: Path) -> Any:
    """A frame one second in (the first frame for shorter clips), decoded from PNG."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise ImagingError("ffmpeg is not installed: videos get no poster")
    data = _ffmpeg_frame(ffmpeg, path, seek_seconds=1) or _ffmpeg_frame(
        ffmpeg, path, seek_seconds=0
    )
    if not data:
        raise ImagingError("the video has no frame to make a poster of")
    try:
        header = pyvips.Image.pngload_buffer(data, access="sequential")
        _check_pixels(int(header.width), int(header.height))
        return pyvips.Image.pngload_buffer(data, fail_on="truncated").copy_memory()
    except pyvips.Error as exc:
        raise ImagingError(f"unreadable video frame: {_detail(exc)}") from exc


def _ffmpeg_frame(ffmpeg: str, path: Path, seek_seconds: int) -> bytes:
    args = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        _VIDEO_FORMATS,
        "-ss",
        str(seek_seconds),
        # "file:" keeps a name such as "concat:x" from being read as a protocol.
        "-i",
        f"file:{path.resolve()}",
        "-frames:v",
        "1",
        "-f",
        "image2pipe",
        "-vcodec",
        "png",
        "-",
    ]
    # Output goes to a file rather than a pipe so that its size is capped without holding
    # an unbounded amount in memory.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=_FFMPEG_TIMEOUT_SECONDS,
                check=False,
                env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired as exc:
            raise ImagingError("ffmpeg timed out") from exc
        if result.returncode != 0:
            err.seek(0)
            detail = _first_line(err.read(2000).decode("utf-8", errors="replace"))
            raise ImagingError(f"ffmpeg failed: {detail}")
        size = out.tell()
        if size > _MAX_POSTER_BYTES:
            raise ImagingError(f"ffmpeg wrote a {size} byte frame")
        out.seek(0)
        return out.read()


# -- output ------------------------------------------------------------------------------


def _run_vips(make: Any) -> Any:
    try:
        return make()
    except pyvips.Error as exc:
        raise ImagingError(f"cannot make the rendition: {_detail(exc)}") from exc


def _encode(image: Any, fmt: str, quality: int) -> RenditionImage:
    try:
        if image.format != "uchar" or image.interpretation not in ("srgb", "b-w"):
            # 16-bit, CMYK, Lab … → 8-bit sRGB, which every encoder and browser takes.
            image = image.colourspace("srgb")
            if image.format != "uchar":
                image = image.cast("uchar")
        if fmt == "jpeg" and image.hasalpha():
            image = image.flatten(background=[255] * (image.bands - 1))
        # keep="none" strips EXIF, XMP, ICC and comments: renditions carry pixels only.
        if fmt == "jpeg":
            data = image.jpegsave_buffer(Q=quality, keep="none", optimize_coding=True)
        elif fmt == "webp":
            data = image.webpsave_buffer(Q=quality, keep="none")
        elif fmt == "png":
            data = image.pngsave_buffer(keep="none")
        else:
            data = image.heifsave_buffer(Q=quality, compression="av1", keep="none")
        return RenditionImage(bytes(data), _MIME_OF_FORMAT[fmt], image.width, image.height)
    except pyvips.Error as exc:
        raise ImagingError(f"cannot encode the rendition: {_detail(exc)}") from exc


def _bare(mime_type: str) -> str:
    return mime_type.split(";", 1)[0].strip().lower()


def _detail(exc: Any) -> str:
    # libvips puts the cause ("premature end of JPEG image") in detail, not in message.
    return _first_line(exc.detail or exc.message)


def _first_line(message: object) -> str:
    text = str(message).strip()
    return text.splitlines()[0] if text else "no detail"
