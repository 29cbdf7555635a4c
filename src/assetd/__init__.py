"""assetd: a self-hosted, multi-tenant digital asset service."""

__version__ = "0.1.0"
