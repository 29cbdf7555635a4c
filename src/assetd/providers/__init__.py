"""Storage providers: a tenant's own buckets (S3) or folders (local) that assets are read from."""
