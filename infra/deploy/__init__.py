"""Staged deploy pipeline, deploy ledger, health checks, rollback and runtimes (local, pulumi)."""
