"""Names of the processing job kinds (kept apart so that scheduling needs no parsers)."""

EXTRACT = "extract"
