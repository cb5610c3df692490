"""Deployable units: inference, ingest, trainer."""
