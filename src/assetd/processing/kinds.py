"""Names of the processing job kinds (kept apart so that scheduling needs no parsers)."""

EXTRACT = "extract"
# Preset renditions of an image, a PDF's page 1, a video poster: one job per preset, so that
# each one's state (and error) shows on its own.
RENDITION_KINDS = {
    preset: f"rendition:{preset}" for preset in ("thumb", "medium", "large", "largeX2")
}
# A virus scan by clamd, when configured; the version is not served until it is clean.
SCAN = "scan"
