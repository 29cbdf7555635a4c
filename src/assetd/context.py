"""Everything a request or job needs, built once by create_app() and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.signing import UrlSigner
from assetd.assets.sniff import Sniffer
from assetd.auth.cache import PrincipalCache
from assetd.auth.jwt import JWTVerifier
from assetd.config import Settings
from assetd.db.session import Database
from assetd.jobs.queue import JobQueue
from assetd.jobs.service import JobService
from assetd.storage.base import BlobStorage
from assetd.uploads.streaming import RunningDigests


@dataclass
class AppContext:
    settings: Settings
    db: Database
    storage: BlobStorage
    signer: UrlSigner
    sniffer: Sniffer
    jwt: JWTVerifier
    principals: PrincipalCache
    # Where scheduled jobs go (JobService pushes to it after commit).
    jobs: JobQueue
    # tus uploads' running hashes (see RunningDigests); per process, an optimization only.
    upload_digests: RunningDigests = field(default_factory=RunningDigests)

    def job_service(self, session: AsyncSession) -> JobService:
        """JobService for this session with the configured queue and attempt limit."""
        return JobService(
            session,
            self.jobs,
            max_attempts=self.settings.jobs_max_attempts,
            scanning=self.settings.clamd_url is not None,
        )


async def get_context(request: Request) -> AppContext:
    # async although it never waits: FastAPI runs a plain-def dependency in a worker thread,
    # a hand-off (~150 µs of CPU here) on every request for one attribute read.
    context: AppContext = request.app.state.context
    return context


def build_context(
    settings: Settings, db: Database, storage: BlobStorage, jobs: JobQueue
) -> AppContext:
    """The context of `serve` and `worker` alike (each process builds its own)."""
    from assetd.app import signing_secret

    return AppContext(
        settings=settings,
        db=db,
        storage=storage,
        signer=UrlSigner(signing_secret(settings)),
        sniffer=Sniffer(),
        jwt=JWTVerifier(settings),
        principals=PrincipalCache(settings.api_key_cache_seconds),
        jobs=jobs,
    )
