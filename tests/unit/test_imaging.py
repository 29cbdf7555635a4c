"""Rendition imaging on real files made with libvips, pdfium-readable PDFs and ffmpeg."""

from __future__ import annotations

from pathlib import Path

import pytest
import pyvips

from assetd.renditions.imaging import (
    MAX_OUTPUT_SIDE,
    PRESETS,
    ImagingError,
    can_render,
    configure_vips,
    make_preset,
    make_presets,
    transform,
)
from tests.fixtures.real_files import (
    make_animation,
    make_corrupt_pdf,
    make_image,
    make_jpeg_with_exif,
    make_mp4,
    make_pdf,
    make_png_bomb,
    make_truncated_jpeg,
)


@pytest.fixture(autouse=True)
def _vips() -> None:
    configure_vips()


def decoded(data: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(data, "")


def detailed_jpeg(directory: Path, width: int, height: int, orientation: int) -> Path:
    """A JPEG with detail at every scale (4 px blocks and per-pixel noise): a picture decoded
    too small and enlarged again differs visibly from one shrunk properly."""
    blocks = pyvips.Image.gaussnoise(width // 4, height // 4, sigma=60, mean=128, seed=1)
    fine = pyvips.Image.gaussnoise(width, height, sigma=40, mean=128, seed=2)
    image = blocks.resize(4, kernel="nearest").bandjoin([fine, fine]).cast("uchar")
    image = image.copy(interpretation="srgb")
    image.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    out = directory / "detailed.jpg"
    image.jpegsave(str(out), Q=90)
    return out


class TestPresets:
    def test_each_preset_shrinks_the_long_side_to_its_size(self, tmp_path: Path) -> None:
        big = make_image(tmp_path, "png", width=3000, height=2000)
        made = make_presets(big, "image/png", PRESETS)
        for preset, size in PRESETS.items():
            image = made[preset]
            assert (image.width, image.height) == (size, round(size * 2 / 3)), preset
            assert image.mime_type == "image/webp"
            found = decoded(image.data)
            assert (found.width, found.height) == (image.width, image.height)
            assert found.get("vips-loader") == "webpload_buffer"

    def test_a_portrait_original_keeps_its_long_side_vertical(self, tmp_path: Path) -> None:
        tall = make_image(tmp_path, "jpeg", width=600, height=1200)
        image = make_preset(tall, "image/jpeg", "thumb")
        assert (image.width, image.height) == (75, 150)

    def test_exif_orientation_is_applied(self, tmp_path: Path) -> None:
        photo = make_jpeg_with_exif(tmp_path, width=64, height=48, orientation=6)
        image = make_preset(photo, "image/jpeg", "thumb")
        assert (image.width, image.height) == (48, 64)  # portrait, as the camera meant

    def test_small_images_are_never_enlarged(self, tmp_path: Path) -> None:
        small = make_image(tmp_path, "png", width=40, height=30)
        for preset in PRESETS:
            image = make_preset(small, "image/png", preset)
            assert (image.width, image.height) == (40, 30)

    def test_jpeg_output_on_request_and_metadata_stripped(self, tmp_path: Path) -> None:
        photo = make_jpeg_with_exif(tmp_path, width=640, height=480, orientation=1)
        image = make_preset(photo, "image/jpeg", "medium", fmt="jpeg")
        assert image.mime_type == "image/jpeg"
        found = decoded(image.data)
        assert found.get("vips-loader") == "jpegload_buffer"
        assert not [name for name in found.get_fields() if name.startswith("exif-ifd0-Make")]

    @pytest.mark.parametrize("fmt", ["png", "webp", "tiff", "avif", "jpeg"])
    def test_still_formats_are_read(self, tmp_path: Path, fmt: str) -> None:
        source = make_image(tmp_path, fmt, width=400, height=200)
        image = make_preset(source, f"image/{fmt}", "thumb")
        assert (image.width, image.height) == (150, 75)

    def test_an_animation_gives_its_first_frame(self, tmp_path: Path) -> None:
        image = make_preset(make_animation(tmp_path), "image/gif", "thumb")
        assert (image.width, image.height) == (16, 12)

    def test_pdf_page_one_is_rendered_at_the_preset_size(self, tmp_path: Path) -> None:
        pdf = make_pdf(tmp_path)  # pages of 200×100 points
        made = make_presets(pdf, "application/pdf", ["thumb", "large"])
        assert (made["thumb"].width, made["thumb"].height) == (150, 75)
        assert (made["large"].width, made["large"].height) == (1024, 512)

    def test_video_poster_frame(self, tmp_path: Path) -> None:
        clip = make_mp4(tmp_path, seconds=2, width=320, height=240)
        made = make_presets(clip, "video/mp4", ["thumb", "large"])
        assert (made["thumb"].width, made["thumb"].height) == (150, 113)
        assert (made["large"].width, made["large"].height) == (320, 240)  # not enlarged

    def test_a_clip_shorter_than_a_second_still_gets_a_poster(self, tmp_path: Path) -> None:
        clip = make_mp4(tmp_path, seconds=1, audio=False)
        assert make_preset(clip, "video/mp4", "thumb").width == 150

    def test_types_without_renditions(self, tmp_path: Path) -> None:
        assert can_render("image/png")
        assert can_render("application/pdf")
        assert can_render("video/mp4")
        assert not can_render("application/zip")
        with pytest.raises(ImagingError, match="no renditions"):
            make_preset(tmp_path / "x", "application/zip", "thumb")

    def test_unknown_preset(self, tmp_path: Path) -> None:
        with pytest.raises(ImagingError, match="unknown preset"):
            make_preset(make_image(tmp_path, "png"), "image/png", "huge")


class TestHostileInput:
    def test_a_decompression_bomb_is_refused_from_its_header(self, tmp_path: Path) -> None:
        bomb = make_png_bomb(tmp_path)  # 10 gigapixels declared, one row of data
        with pytest.raises(ImagingError, match="pixel limit"):
            make_preset(bomb, "image/png", "thumb")
        with pytest.raises(ImagingError, match="pixel limit"):
            transform(bomb, "image/png", 10, 10)

    @pytest.mark.parametrize("keep_bytes", [100, 600])
    def test_a_truncated_jpeg_is_an_error(self, tmp_path: Path, keep_bytes: int) -> None:
        cut = make_truncated_jpeg(tmp_path, keep_bytes=keep_bytes)
        with pytest.raises(ImagingError):
            make_preset(cut, "image/jpeg", "thumb")

    def test_a_jpeg_cut_inside_its_pixels_is_an_error(self, tmp_path: Path) -> None:
        whole = make_jpeg_with_exif(tmp_path, width=800, height=600).read_bytes()
        cut = tmp_path / "cut.jpg"
        cut.write_bytes(whole[: len(whole) // 2])
        with pytest.raises(ImagingError, match="premature end"):
            make_preset(cut, "image/jpeg", "thumb")

    def test_a_corrupt_pdf_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(ImagingError, match="PDF"):
            make_preset(make_corrupt_pdf(tmp_path), "application/pdf", "thumb")

    def test_a_file_whose_bytes_disagree_with_its_type_is_an_error(self, tmp_path: Path) -> None:
        png = make_image(tmp_path, "png")
        with pytest.raises(ImagingError):
            make_preset(png, "image/jpeg", "thumb")

    def test_garbage_called_a_video_is_an_error(self, tmp_path: Path) -> None:
        junk = tmp_path / "junk.mp4"
        junk.write_bytes(b"\x00" * 4096)
        with pytest.raises(ImagingError):
            make_preset(junk, "video/mp4", "thumb")


class TestJpegShrinkOnLoad:
    """A JPEG thumbnail of at most 1/8 of the picture is decoded at 1/8 (as Pillow's draft()
    does), then resized: the same picture as libvips' own thumbnail(), cheaper."""

    @pytest.mark.parametrize(
        ("width", "height", "fit"),
        [
            (256, None, "inside"),
            (None, 150, "inside"),
            (300, 300, "cover"),
            (300, 300, "contain"),
            (120, None, "inside"),
            (700, 700, "inside"),
        ],
    )
    @pytest.mark.parametrize("orientation", [1, 6])
    def test_the_result_is_libvips_own_thumbnail(
        self,
        tmp_path: Path,
        width: int | None,
        height: int | None,
        fit: str,
        orientation: int,
    ) -> None:
        photo = detailed_jpeg(tmp_path, 3000, 2000, orientation)
        made = transform(photo, "image/jpeg", width, height, fit, "png")  # type: ignore[arg-type]
        options: dict[str, object] = {"size": "both" if fit != "inside" else "down"}
        if fit == "cover":
            options["crop"] = "centre"
        reference = pyvips.Image.thumbnail(
            str(photo), width or MAX_OUTPUT_SIDE, height=height or MAX_OUTPUT_SIDE, **options
        )
        if fit == "contain":
            reference = reference.gravity(
                "centre", width, height, extend="background", background=[0, 0, 0]
            )
        found = decoded(made.data)
        assert (found.width, found.height) == (reference.width, reference.height)
        assert (made.width, made.height) == (reference.width, reference.height)
        # The same picture, turned the same way: ~2 levels apart on average (the two DCT
        # scales resample the noise differently); decoded too small and enlarged, 10 or more.
        difference = (found[:3].cast("float") - reference[:3].cast("float")).abs().avg()
        assert difference < 4.0

    def test_a_turned_photo_is_shrunk_by_its_shown_sides(self, tmp_path: Path) -> None:
        # Stored 2400×1600, shown 1600×2400: 250 px wide is more than 1/8 of the shown
        # width, though less than 1/8 of the stored one (300×200 turned would be too narrow).
        photo = make_jpeg_with_exif(tmp_path, width=2400, height=1600, orientation=6)
        image = transform(photo, "image/jpeg", 250, None, "inside", "jpeg")
        assert (image.width, image.height) == (250, 375)
        assert (decoded(image.data).width, decoded(image.data).height) == (250, 375)
        thumb = make_preset(photo, "image/jpeg", "thumb")
        assert (thumb.width, thumb.height) == (100, 150)

    def test_a_jpeg_is_never_enlarged(self, tmp_path: Path) -> None:
        photo = make_jpeg_with_exif(tmp_path, width=640, height=480, orientation=1)
        image = transform(photo, "image/jpeg", 2000, None, "inside", "jpeg")
        assert (image.width, image.height) == (640, 480)


class TestTransform:
    @pytest.mark.parametrize(
        ("fit", "size"), [("cover", (300, 300)), ("contain", (300, 300)), ("inside", (300, 200))]
    )
    def test_fits(self, tmp_path: Path, fit: str, size: tuple[int, int]) -> None:
        source = make_image(tmp_path, "png", width=1500, height=1000)
        image = transform(source, "image/png", 300, 300, fit, "png")  # type: ignore[arg-type]
        assert (image.width, image.height) == size
        found = decoded(image.data)
        assert (found.width, found.height) == size

    def test_one_side_keeps_the_aspect_ratio(self, tmp_path: Path) -> None:
        source = make_image(tmp_path, "png", width=1500, height=1000)
        assert transform(source, "image/png", 300, None).height == 200
        assert transform(source, "image/png", None, 100).width == 150

    @pytest.mark.parametrize(
        ("fmt", "mime"),
        [
            ("jpeg", "image/jpeg"),
            ("webp", "image/webp"),
            ("png", "image/png"),
            ("avif", "image/avif"),
        ],
    )
    def test_formats(self, tmp_path: Path, fmt: str, mime: str) -> None:
        source = make_image(tmp_path, "png", width=200, height=100)
        image = transform(source, "image/png", 100, 100, "contain", fmt, 60)  # type: ignore[arg-type]
        assert image.mime_type == mime
        assert (decoded(image.data).width, decoded(image.data).height) == (100, 100)

    def test_quality_changes_the_size(self, tmp_path: Path) -> None:
        source = make_jpeg_with_exif(tmp_path, width=800, height=600, orientation=1)
        low = transform(source, "image/jpeg", 400, 300, "cover", "jpeg", 10)
        high = transform(source, "image/jpeg", 400, 300, "cover", "jpeg", 95)
        assert len(low.data) < len(high.data)

    @pytest.mark.parametrize(
        ("width", "height", "fit", "fmt", "quality"),
        [
            (None, None, "inside", "webp", 80),
            (MAX_OUTPUT_SIDE + 1, 10, "inside", "webp", 80),
            (10, 0, "inside", "webp", 80),
            (10, 10, "stretch", "webp", 80),
            (10, 10, "inside", "gif", 80),
            (10, 10, "inside", "webp", 0),
            (10, 10, "inside", "webp", 101),
        ],
    )
    def test_limits(
        self,
        tmp_path: Path,
        width: int | None,
        height: int | None,
        fit: str,
        fmt: str,
        quality: int,
    ) -> None:
        source = make_image(tmp_path, "png")
        with pytest.raises(ImagingError):
            transform(source, "image/png", width, height, fit, fmt, quality)  # type: ignore[arg-type]
