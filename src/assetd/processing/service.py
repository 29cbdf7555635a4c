"""Processing use cases run by jobs: facts extracted from a version's bytes.

The bytes are copied to a temporary file first (blobs may live in S3, and the parsers want a
path); no transaction is open while they are read and parsed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio.to_thread
import structlog

from assetd.assets.repository import AssetRepository, VersionRepository
from assetd.assets.service import SCAN_CLEAN, SCAN_INFECTED, SCAN_PENDING
from assetd.db.session import Database
from assetd.processing import clamd
from assetd.processing.extract import extract_facts
from assetd.storage.base import BlobStorage
from assetd.storage.keys import blob_key

log = structlog.get_logger()


class ProcessingService:
    def __init__(self, db: Database, storage: BlobStorage, temp_dir: Path | None = None) -> None:
        self.db = db
        self.storage = storage
        self.temp_dir = temp_dir

    async def extract(self, tenant_id: str, version_id: str) -> dict[str, Any] | None:
        """Store the facts of one version (and of its asset, if current); None if it is gone.

        Idempotent: a version's bytes never change, so running again writes the same facts.
        """
        async with self.db.session(write=False) as session:
            version = await VersionRepository(session).get(tenant_id, version_id)
            if version is None:
                return None  # purged since the job was scheduled: nothing to describe
            key = blob_key(tenant_id, version.sha256)
            mime_type = version.mime_type
        facts = await anyio.to_thread.run_sync(self._extract_blob, key, mime_type)
        async with self.db.session() as session:
            version = await VersionRepository(session).get(tenant_id, version_id)
            if version is None:
                return None
            version.facts = facts
            asset = await AssetRepository(session).get(tenant_id, version.asset_id)
            if asset is not None and asset.current_version_id == version.id:
                asset.facts = dict(facts)
        log.info("version.facts_extracted", version_id=version_id, keys=sorted(facts))
        return facts

    async def scan(self, tenant_id: str, version_id: str, clamd_url: str) -> str | None:
        """Scan a pending version with clamd: clean, or infected and quarantined for good."""
        async with self.db.session(write=False) as session:
            version = await VersionRepository(session).get(tenant_id, version_id)
            if version is None or version.scan_status != SCAN_PENDING:
                return None  # purged, or scanned already (this job ran before a crash)
            key = blob_key(tenant_id, version.sha256)
        verdict = await anyio.to_thread.run_sync(
            lambda: clamd.scan(clamd_url, self.storage.read(key))
        )
        async with self.db.session() as session:
            version = await VersionRepository(session).get(tenant_id, version_id)
            if version is None:
                return None
            version.scan_status = SCAN_INFECTED if verdict.infected else SCAN_CLEAN
            version.scan_result = verdict.signature
        if verdict.infected:
            # The event: who uploaded what, and what clamd found; the version stays, unserved.
            log.warning(
                "version.quarantined",
                tenant_id=tenant_id,
                asset_id=version.asset_id,
                version=version.number,
                signature=verdict.signature,
                created_by=version.created_by,
            )
        return version.scan_status

    def _extract_blob(self, key: str, mime_type: str) -> dict[str, Any]:
        with tempfile.NamedTemporaryFile(dir=self.temp_dir, prefix="assetd-extract-") as handle:
            for chunk in self.storage.read(key):
                handle.write(chunk)
            handle.flush()
            return extract_facts(Path(handle.name), mime_type)
