"""The torch side of Fermion: datasets to tensors (`data.py`), the training loop (`loop.py`), metrics
(`metrics.py`), architectures and the catalog of their names (`architectures.py`, `catalog.py`),
checkpoints, distributed ranks and the reference profile of a trained model's inputs.

A library, not a unit: the trainer function, the federated participant and edge export call it.
Importing the package imports nothing; `catalog.py` is torch-free so ingest can list names.
"""
