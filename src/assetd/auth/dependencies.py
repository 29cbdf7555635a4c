"""FastAPI dependencies that turn request headers into a Principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from assetd.auth.jwt import principal_from_claims
from assetd.auth.principal import Principal
from assetd.auth.service import ApiKeyService, hash_key
from assetd.context import AppContext
from assetd.errors import Forbidden, Unauthenticated
from assetd.tenants.service import TenantService, TenantSnapshot


def presented_token(request: Request) -> str | None:
    """The credential in `Authorization: Bearer …` or `X-API-Key`, if any."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("Authorization header must be 'Bearer <token>'")
        return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key else None


async def authenticate(context: AppContext, token: str) -> Principal:
    token_hash = hash_key(token)
    cached = context.principals.get(token_hash)
    if cached is not None:
        return cached
    principal: Principal | None = None
    async with context.db.session(write=False) as session:
        if token.count(".") == 2 and context.jwt.enabled:
            claims = context.jwt.claims(token)
            slug = context.jwt.tenant_slug(claims) if claims else None
            tenant = await TenantService(session).find_by_slug(slug) if slug else None
            if claims is not None and tenant is not None:
                principal = principal_from_claims(claims, TenantSnapshot.of(tenant))
        else:
            principal = await ApiKeyService(session).authenticate(token)
    if principal is None:
        raise Unauthenticated("invalid, expired or revoked credentials")
    context.principals.put(token_hash, principal)
    return principal


async def optional_principal(request: Request) -> Principal | None:
    # Takes the request alone, not sub-dependencies: every authenticated request solves
    # this, and each level of FastAPI's dependency solving costs measurable CPU.
    token = presented_token(request)
    if token is None:
        return None
    context: AppContext = request.app.state.context
    return await authenticate(context, token)


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that demands credentials carrying `scope` (or admin)."""

    async def dependency(request: Request) -> Principal:
        principal = await optional_principal(request)
        if principal is None:
            raise Unauthenticated("credentials required: 'Authorization: Bearer …' or 'X-API-Key'")
        if not principal.has(scope):
            raise Forbidden(f"this operation needs the {scope!r} scope")
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
