"""Background jobs: an outbox table in the database, executed through huey."""
