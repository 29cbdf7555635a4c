"""Names of the processing job kinds (kept apart so that scheduling needs no parsers)."""

EXTRACT = "extract"
# Preset renditions (thumb, medium, large, largeX2) of an image, a PDF's page 1, a video poster.
RENDITIONS = "renditions"
# A virus scan by clamd, when configured; the version is not served until it is clean.
SCAN = "scan"
