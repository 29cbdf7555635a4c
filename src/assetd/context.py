"""Everything a request or job needs, built once by create_app() and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from assetd.assets.signing import UrlSigner
from assetd.assets.sniff import Sniffer
from assetd.auth.cache import PrincipalCache
from assetd.auth.jwt import JWTVerifier
from assetd.config import Settings
from assetd.db.session import Database
from assetd.storage.base import BlobStorage


@dataclass
class AppContext:
    settings: Settings
    db: Database
    storage: BlobStorage
    signer: UrlSigner
    sniffer: Sniffer
    jwt: JWTVerifier
    principals: PrincipalCache


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context
