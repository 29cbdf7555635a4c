"""Who is acting: the tenant, the scopes and roles, and a name for audit fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from assetd.tenants.service import TenantSnapshot

READ = "assets:read"
WRITE = "assets:write"
DELETE = "assets:delete"
ADMIN = "admin"
# Installing a package changes many assets at once: a scope of its own, beyond assets:write.
INSTALL = "packages:install"
ALL_SCOPES = (READ, WRITE, DELETE, INSTALL, ADMIN)
# Roles name groups in security templates; they come from API keys and identity providers'
# JWTs, so any printable text up to 100 characters.
ROLE_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"
MAX_ROLES = 50

# Scope names used by the seed APIs, mapped onto assetd's own.
SEED_SCOPE_ALIASES = {
    "media.asset_read": (READ,),
    "media.asset_manage": (READ, WRITE, DELETE),
    "mdm.global.asset.create": (READ, WRITE),
}


def expand_scopes(scopes: object) -> frozenset[str]:
    """Accept a space-separated string or a list; fold the seeds' names into ours."""
    items = scopes.split() if isinstance(scopes, str) else list(scopes or [])  # type: ignore[call-overload]
    expanded: set[str] = set()
    for item in items:
        name = str(item)
        expanded.add(name)
        expanded.update(SEED_SCOPE_ALIASES.get(name, ()))
    return frozenset(expanded)


@dataclass(frozen=True)
class Principal:
    tenant: TenantSnapshot
    subject: str
    scopes: frozenset[str]
    roles: frozenset[str] = field(default_factory=frozenset)
    email: str | None = None
    name: str | None = None

    def has(self, scope: str) -> bool:
        return ADMIN in self.scopes or scope in self.scopes

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def actor(self) -> str:
        """What createdBy/modifiedBy record."""
        return self.email or self.subject
