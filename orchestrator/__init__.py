"""Seed compatibility: ``python -m orchestrator.cli_init`` from a checkout."""
