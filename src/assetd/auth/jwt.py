"""Bearer JWTs from an external identity provider, mapped onto a Principal."""

from __future__ import annotations

from typing import Any

import jwt

from assetd.auth.principal import Principal, expand_scopes
from assetd.config import Settings


class JWTVerifier:
    def __init__(self, settings: Settings) -> None:
        self.algorithms: list[str] = []
        self.key: str | None = None
        if settings.jwt_rs256_public_key:
            self.algorithms, self.key = ["RS256"], settings.jwt_rs256_public_key
        elif settings.jwt_hs256_secret:
            self.algorithms, self.key = ["HS256"], settings.jwt_hs256_secret.get_secret_value()
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.tenant_claim = settings.jwt_tenant_claim

    @property
    def enabled(self) -> bool:
        return self.key is not None

    def claims(self, token: str) -> dict[str, Any] | None:
        """The verified claims, or None for any token that does not verify."""
        if self.key is None:
            return None
        try:
            return jwt.decode(
                token,
                self.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp"], "verify_aud": self.audience is not None},
            )
        except jwt.PyJWTError:
            return None

    def tenant_slug(self, claims: dict[str, Any]) -> str | None:
        value = claims.get(self.tenant_claim)
        return value if isinstance(value, str) else None


def principal_from_claims(claims: dict[str, Any], tenant: Any) -> Principal:
    scopes = claims.get("scope", claims.get("scopes", claims.get("scp", [])))
    roles = claims.get("roles", [])
    return Principal(
        tenant=tenant,
        subject=f"user:{claims.get('sub', '')}",
        scopes=expand_scopes(scopes),
        roles=frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset(),
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
        name=claims.get("name") if isinstance(claims.get("name"), str) else None,
    )
