"""Events: the audit log of every change, and webhooks that deliver them."""
