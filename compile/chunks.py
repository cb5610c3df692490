"""Held-out rows through torch and ONNX Runtime in chunks of rows, never all at once.

One forward pass over a large held-out split holds every layer's activations for every row: on
400,000 rows of a 2 M-row table that was gigabytes, several times the table itself
(`bench/tables_memory.py --job`). Chunks keep it to CHUNK_ROWS rows' worth; the outputs (a few
columns a row) are joined.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

CHUNK_ROWS = 16_384


def torch_outputs(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The module's output (evaluation mode, no gradients) on every row of `x`."""
    module.eval()
    with torch.no_grad():  # no rows: one empty batch, for the output's shape
        parts = [module(torch.from_numpy(x[i : i + CHUNK_ROWS])).numpy() for i in range(0, max(len(x), 1), CHUNK_ROWS)]
    return np.concatenate(parts)


def session_outputs(session: ort.InferenceSession, name: str, x: np.ndarray) -> np.ndarray:
    """The session's first output on every row of `x`, fed as input `name`."""
    parts = [session.run(None, {name: x[i : i + CHUNK_ROWS]})[0] for i in range(0, max(len(x), 1), CHUNK_ROWS)]
    return np.concatenate(parts)
