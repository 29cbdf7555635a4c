"""Facts from real files made by real tools, and clean refusals of hostile ones."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from assetd.processing import ExtractionError, extract, extract_facts
from assetd.processing.kinds import EXTRACTED_TYPES, has_facts
from tests.fixtures import real_files

APK = "application/vnd.android.package-archive"
MSI = "application/x-msi"
PDF = "application/pdf"


class TestImageFacts:
    def test_jpeg_exif_gives_camera_time_and_signed_gps(self, tmp_path: Path) -> None:
        path = real_files.make_jpeg_with_exif(
            tmp_path, gps=(-33.8568, -151.2153), taken_at="2019:12:31 23:59:58"
        )

        assert extract_facts(path, "image/jpeg") == {
            "width": 64,
            "height": 48,
            "orientation": 6,
            "frames": 1,
            "camera": {"make": "Canon", "model": "EOS 5D"},
            "takenAt": "2019-12-31T23:59:58",
            "gps": {"latitude": -33.8568, "longitude": -151.2153},
        }

    def test_jpeg_defaults_round_trip(self, tmp_path: Path) -> None:
        facts = extract_facts(real_files.make_jpeg_with_exif(tmp_path), "image/jpeg")

        assert facts["gps"] == {"latitude": 52.52, "longitude": 13.405}
        assert facts["takenAt"] == "2021-06-01T12:34:56"

    def test_camera_model_with_parentheses_is_kept_whole(self, tmp_path: Path) -> None:
        path = real_files.make_jpeg_with_exif(tmp_path, model="EOS (5D) Mark II")

        assert extract_facts(path, "image/jpeg")["camera"]["model"] == "EOS (5D) Mark II"

    @pytest.mark.parametrize(
        ("fmt", "mime"),
        [
            ("png", "image/png"),
            ("webp", "image/webp"),
            ("tiff", "image/tiff"),
            ("avif", "image/avif"),
            ("heic", "image/heic"),
        ],
    )
    def test_still_image_without_exif(self, tmp_path: Path, fmt: str, mime: str) -> None:
        path = real_files.make_image(tmp_path, fmt, width=40, height=30)

        assert extract_facts(path, mime) == {
            "width": 40,
            "height": 30,
            "orientation": 1,
            "frames": 1,
        }

    @pytest.mark.parametrize(("fmt", "mime"), [("gif", "image/gif"), ("webp", "image/webp")])
    def test_animation_counts_frames(self, tmp_path: Path, fmt: str, mime: str) -> None:
        path = real_files.make_animation(tmp_path, fmt, frames=3)

        assert extract_facts(path, mime) == {
            "width": 16,
            "height": 12,
            "orientation": 1,
            "frames": 3,
        }

    def test_decompression_bomb_header_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="pixel limit"):
            extract_facts(real_files.make_png_bomb(tmp_path), "image/png")

    def test_jpeg_truncated_inside_its_headers_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="premature end of JPEG"):
            extract_facts(real_files.make_truncated_jpeg(tmp_path), "image/jpeg")

    def test_jpeg_truncated_after_its_headers_still_gives_header_facts(
        self, tmp_path: Path
    ) -> None:
        # Extraction reads headers only; a cut in the scan data shows up when pixels are
        # decoded (renditions), not here.
        whole = real_files.make_jpeg_with_exif(tmp_path)
        cut = tmp_path / "cut.jpg"
        cut.write_bytes(whole.read_bytes()[:-200])

        assert extract_facts(cut, "image/jpeg")["width"] == 64

    def test_random_bytes_named_png_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="image/png"):
            extract_facts(real_files.make_random_bytes(tmp_path), "image/png")

    def test_jpeg_loader_refuses_a_png_claimed_as_jpeg(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError):
            extract_facts(real_files.make_image(tmp_path, "png"), "image/jpeg")


class TestApkFacts:
    def test_manifest_facts_and_resolved_label(self, tmp_path: Path) -> None:
        path = real_files.make_apk(tmp_path)

        assert extract_facts(path, APK) == {
            "packageName": "com.example.demo",
            "versionCode": 42,
            "versionName": "4.2.0",
            "minSdkVersion": 21,
            "targetSdkVersion": 34,
            "productName": "Demo App",
        }

    def test_other_values_round_trip(self, tmp_path: Path) -> None:
        path = real_files.make_apk(
            tmp_path,
            package="org.example.tool",
            version_code=2_100_000_001,
            version_name="2024.1-rc.3",
            min_sdk=26,
            target_sdk=35,
            label="Kalender & Uhr — Zeit",
        )

        facts = extract_facts(path, APK)

        assert facts["packageName"] == "org.example.tool"
        assert facts["versionCode"] == 2_100_000_001
        assert facts["versionName"] == "2024.1-rc.3"
        assert (facts["minSdkVersion"], facts["targetSdkVersion"]) == (26, 35)
        assert facts["productName"] == "Kalender & Uhr — Zeit"

    def test_label_naming_a_framework_string_is_left_out(self, tmp_path: Path) -> None:
        path = real_files.make_apk(tmp_path, label_reference="@android:string/ok")

        facts = extract_facts(path, APK)

        assert "productName" not in facts
        assert facts["packageName"] == "com.example.demo"

    def test_zip_without_manifest_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="AndroidManifest"):
            extract_facts(real_files.make_zip_without_manifest(tmp_path), APK)

    def test_random_bytes_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="not an APK"):
            extract_facts(real_files.make_random_bytes(tmp_path, "random.apk"), APK)

    def test_garbage_manifest_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="APK"):
            extract_facts(real_files.make_apk_with_garbage_manifest(tmp_path), APK)

    def test_manifest_zip_bomb_is_refused_before_inflating(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="implausibly large"):
            extract_facts(real_files.make_apk_with_manifest_bomb(tmp_path), APK)


class TestMsiFacts:
    def test_property_table(self, tmp_path: Path) -> None:
        path = real_files.make_msi(tmp_path)

        assert extract_facts(path, MSI) == {
            "productCode": "{7410DF3C-E20B-43C2-8E66-43C8AACDEC91}",
            "productVersion": "1.2.3",
            "productName": "Demo Product",
            "manufacturer": "Example Corp",
        }

    def test_agrees_with_msitools(self, tmp_path: Path) -> None:
        path = real_files.make_msi(
            tmp_path, name="Café Übersetzer", version="10.20.30", manufacturer="Zoë & Co"
        )

        facts = extract_facts(path, MSI)

        expected = real_files.msiinfo_properties(path)
        assert facts == {
            "productCode": expected["ProductCode"],
            "productVersion": expected["ProductVersion"],
            "productName": expected["ProductName"],
            "manufacturer": expected["Manufacturer"],
        }
        assert facts["productName"] == "Café Übersetzer"

    def test_random_bytes_are_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="not an MSI"):
            extract_facts(real_files.make_random_bytes(tmp_path, "random.msi"), MSI)

    def test_property_pointing_outside_the_string_pool_is_refused(self, tmp_path: Path) -> None:
        path = real_files.patch_msi_stream(
            real_files.make_msi(tmp_path), "!Property", lambda data: b"\xff" * len(data)
        )

        with pytest.raises(ExtractionError, match="outside the string pool"):
            extract_facts(path, MSI)

    def test_string_pool_longer_than_its_data_is_refused(self, tmp_path: Path) -> None:
        # Keep the codepage header, then claim every string is 60000 bytes long.
        path = real_files.patch_msi_stream(
            real_files.make_msi(tmp_path),
            "!_StringPool",
            lambda data: data[:4] + b"\x60\xea\x01\x00" * ((len(data) - 4) // 4),
        )

        with pytest.raises(ExtractionError, match="runs past its data"):
            extract_facts(path, MSI)

    def test_truncated_msi_is_refused(self, tmp_path: Path) -> None:
        whole = real_files.make_msi(tmp_path)
        truncated = tmp_path / "truncated.msi"
        truncated.write_bytes(whole.read_bytes()[:2048])

        with pytest.raises(ExtractionError):
            extract_facts(truncated, MSI)


class TestPdfFacts:
    def test_pages_title_author(self, tmp_path: Path) -> None:
        path = real_files.make_pdf(tmp_path, pages=3, title="Report", author="Ann")

        assert extract_facts(path, PDF) == {
            "pages": 3,
            "encrypted": False,
            "title": "Report",
            "author": "Ann",
        }

    def test_unicode_metadata(self, tmp_path: Path) -> None:
        path = real_files.make_pdf(
            tmp_path, pages=1, title="Bericht (Entwurf) – 2024", author="Zoë"
        )

        assert extract_facts(path, PDF) == {
            "pages": 1,
            "encrypted": False,
            "title": "Bericht (Entwurf) – 2024",
            "author": "Zoë",
        }

    def test_empty_metadata_is_left_out(self, tmp_path: Path) -> None:
        path = real_files.make_pdf(tmp_path, pages=1, title="", author="")

        assert extract_facts(path, PDF) == {"pages": 1, "encrypted": False}

    def test_encrypted_with_user_password_reports_only_encryption(self, tmp_path: Path) -> None:
        path = real_files.make_encrypted_pdf(tmp_path, user_password="secret")

        assert extract_facts(path, PDF) == {"encrypted": True}

    def test_encrypted_with_empty_user_password_is_read(self, tmp_path: Path) -> None:
        path = real_files.make_encrypted_pdf(tmp_path, user_password="")

        assert extract_facts(path, PDF) == {
            "pages": 3,
            "encrypted": True,
            "title": "Report",
            "author": "Ann",
        }

    def test_corrupt_pdf_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ExtractionError, match="unreadable PDF"):
            extract_facts(real_files.make_corrupt_pdf(tmp_path), PDF)


class TestVideoFacts:
    def test_mp4_duration_size_codecs(self, tmp_path: Path) -> None:
        real_files.require_tool("ffprobe")
        path = real_files.make_mp4(tmp_path, seconds=1, width=160, height=120)

        facts = extract_facts(path, "video/mp4")

        # AAC priming and frame rounding put the container's duration a little past 1 s.
        assert facts.pop("durationSeconds") == pytest.approx(1.0, abs=0.1)
        assert facts == {
            "width": 160,
            "height": 120,
            "videoCodec": "h264",
            "audioCodec": "aac",
        }

    def test_video_without_audio_has_no_audio_codec(self, tmp_path: Path) -> None:
        real_files.require_tool("ffprobe")
        path = real_files.make_mp4(tmp_path, audio=False, width=96, height=64)

        facts = extract_facts(path, "video/mp4")

        assert "audioCodec" not in facts
        assert (facts["width"], facts["height"], facts["videoCodec"]) == (96, 64, "h264")

    def test_random_bytes_are_refused(self, tmp_path: Path) -> None:
        real_files.require_tool("ffprobe")

        with pytest.raises(ExtractionError, match="ffprobe"):
            extract_facts(real_files.make_random_bytes(tmp_path, "random.mp4"), "video/mp4")

    def test_playlist_cannot_make_ffprobe_open_other_files(self, tmp_path: Path) -> None:
        real_files.require_tool("ffprobe")
        clip = real_files.make_mp4(tmp_path)
        playlist = tmp_path / "sneaky.mp4"
        # A relative name passes the concat demuxer's own "safe" check, so without the
        # format whitelist ffprobe would follow it and describe clip.mp4 instead.
        playlist.write_text(f"ffconcat version 1.0\nfile '{clip.name}'\n", encoding="utf-8")

        with pytest.raises(ExtractionError, match="not on whitelist"):
            extract_facts(playlist, "video/mp4")


class TestToolBounds:
    """ffprobe stand-ins on PATH: the bounds hold whatever the tool does."""

    def _fake_ffprobe(self, directory: Path, script: str) -> Path:
        bin_dir = directory / "bin"
        bin_dir.mkdir()
        tool = bin_dir / "ffprobe"
        tool.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
        return bin_dir

    def test_missing_ffprobe_gives_no_facts(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", str(tmp_path))

        assert extract_facts(real_files.make_random_bytes(tmp_path, "a.mp4"), "video/mp4") == {}

    def test_hanging_tool_is_killed_after_the_timeout(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", str(self._fake_ffprobe(tmp_path, "exec /bin/sleep 30")))
        monkeypatch.setattr(extract, "_TOOL_TIMEOUT_SECONDS", 0.5)

        with pytest.raises(ExtractionError, match="timed out"):
            extract_facts(real_files.make_random_bytes(tmp_path, "a.mp4"), "video/mp4")

    def test_flood_of_output_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        flood = "head -c 2000000 /dev/zero"
        monkeypatch.setenv("PATH", str(self._fake_ffprobe(tmp_path, flood)) + ":/usr/bin:/bin")

        with pytest.raises(ExtractionError, match="printed 2000000 bytes"):
            extract_facts(real_files.make_random_bytes(tmp_path, "a.mp4"), "video/mp4")

    def test_output_that_is_not_json_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PATH", str(self._fake_ffprobe(tmp_path, "echo nope")))

        with pytest.raises(ExtractionError, match="JSON"):
            extract_facts(real_files.make_random_bytes(tmp_path, "a.mp4"), "video/mp4")


class TestExifParsing:
    """libvips prints EXIF tags as "<value> (<description>, <type>, n components, m bytes)"."""

    def test_unset_or_blank_date_is_no_fact(self) -> None:
        raw = "0000:00:00 00:00:00 (0000:00:00 00:00:00, ASCII, 20 components, 20 bytes)"

        assert extract._exif_facts({"exif-ifd2-DateTimeOriginal": raw}) == {}

    def test_offset_is_appended_to_taken_at(self) -> None:
        facts = extract._exif_facts(
            {
                "exif-ifd2-DateTimeOriginal": "2024:02:29 08:00:00 "
                "(2024:02:29 08:00:00, ASCII, 20 components, 20 bytes)",
                "exif-ifd2-OffsetTimeOriginal": "+05:30 (+05:30, ASCII, 7 components, 7 bytes)",
            }
        )

        assert facts == {"takenAt": "2024-02-29T08:00:00+05:30"}

    @pytest.mark.parametrize(
        "latitude",
        [
            "52/1 31/0 0/1 (52, ?, 0, Rational, 3 components, 24 bytes)",
            "52/1 31/1 (52, 31, Rational, 2 components, 16 bytes)",
            "x/1 31/1 0/1 (?, Rational, 3 components, 24 bytes)",
            "95/1 0/1 0/1 (95, 0, 0, Rational, 3 components, 24 bytes)",
        ],
    )
    def test_malformed_or_impossible_gps_is_no_fact(self, latitude: str) -> None:
        exif = {
            "exif-ifd3-GPSLatitude": latitude,
            "exif-ifd3-GPSLongitude": "13/1 24/1 1800/100 (13, 24, 18.00, Rational, 3 …)",
        }

        assert extract._exif_facts(exif) == {}


class TestDispatch:
    def test_unknown_type_has_no_facts(self, tmp_path: Path) -> None:
        path = real_files.make_random_bytes(tmp_path, "blob.bin")

        assert extract_facts(path, "application/octet-stream") == {}

    def test_mime_parameters_and_case_are_ignored(self, tmp_path: Path) -> None:
        path = real_files.make_pdf(tmp_path, pages=2)

        assert extract_facts(path, "Application/PDF; charset=binary")["pages"] == 2

    def test_facts_are_json_serializable(self, tmp_path: Path) -> None:
        path = real_files.make_jpeg_with_exif(tmp_path)

        facts = extract_facts(path, "image/jpeg")

        assert json.loads(json.dumps(facts)) == facts


def test_scheduling_knows_the_types_extraction_has_parsers_for() -> None:
    # kinds.EXTRACTED_TYPES decides who gets an extract job without importing the parsers.
    assert set(extract._EXTRACTORS) == EXTRACTED_TYPES
    assert has_facts("video/mp4")
    assert has_facts("IMAGE/JPEG; charset=binary")
    assert not has_facts("application/octet-stream")
    assert not has_facts("text/plain")
