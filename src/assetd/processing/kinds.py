"""Names of the processing job kinds (kept apart so that scheduling needs no parsers)."""

EXTRACT = "extract"
# The types extraction has a parser for (processing.extract; a test keeps the two in step),
# and every video/*. A version of any other type gets no extract job: it could only record
# the empty facts the version starts with.
EXTRACTED_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/tiff",
        "image/heic",
        "image/heif",
        "image/heic-sequence",
        "image/heif-sequence",
        "image/avif",
        "application/vnd.android.package-archive",
        "application/x-msi",
        "application/x-ms-installer",
        "application/vnd.ms-msi",
        "application/pdf",
    }
)
# Preset renditions of an image, a PDF's page 1, a video poster: one job per preset, so that
# each one's state (and error) shows on its own.
RENDITION_KINDS = {
    preset: f"rendition:{preset}" for preset in ("thumb", "medium", "large", "largeX2")
}
# A virus scan by clamd, when configured; the version is not served until it is clean.
SCAN = "scan"


def has_facts(mime_type: str) -> bool:
    """Whether extraction can find anything in a file of this (sniffed) type."""
    mime = mime_type.split(";", 1)[0].strip().lower()
    return mime in EXTRACTED_TYPES or mime.startswith("video/")
