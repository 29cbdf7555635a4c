"""Pure processing of stored files: facts (metadata) read from their headers."""

from assetd.processing.extract import ExtractionError, extract_facts

__all__ = ["ExtractionError", "extract_facts"]
