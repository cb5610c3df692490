"""Deployable units only: inference, ingest, trainer, monitor, federated. What they share is `fermion.service`."""
