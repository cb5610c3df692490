"""The torch side of a federation: the recipe's module, its weights as arrays, local training, export.

The recipes are the trainer's (training/architectures.py): a federated model is built
exactly as a centrally trained one, so the same architectures and the same ONNX export serve it.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from fermion.compile import INPUT_NAME, check_parity, export_onnx, optimize_fp32
from fermion.events import Recipe
from fermion.training.architectures import build
from fermion.training.metrics import evaluate

from .weights import State


def build_module(recipe: Recipe, x_reference: np.ndarray, n_classes: int) -> nn.Module:
    """The recipe's module, its preprocessing fitted on `x_reference`, weights seeded by the recipe."""
    torch.manual_seed(recipe.seed)
    return build(recipe.architecture, x_reference, n_classes)


def state_of(module: nn.Module) -> State:
    """Every parameter and buffer as a numpy array."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_state(module: nn.Module, state: State) -> nn.Module:
    """Put `state` into `module` (names and shapes must match)."""
    module.load_state_dict({k: torch.from_numpy(np.array(v, copy=True, order="C")) for k, v in state.items()})
    return module


def trainable(module: nn.Module) -> set[str]:
    """The names of the trained tensors (buffers such as the fitted standardisation are not)."""
    return {name for name, _ in module.named_parameters()}


def local_train(
    module: nn.Module, x: np.ndarray, y: np.ndarray, recipe: Recipe, *, proximal_mu: float, seed: int
) -> dict[str, float]:
    """`recipe.epochs` epochs on local rows, with FedProx's proximal term when `proximal_mu` > 0."""
    anchor = [p.detach().clone() for p in module.parameters()]
    opt = torch.optim.AdamW(module.parameters(), lr=recipe.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(recipe.epochs):
        module.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            opt.zero_grad()
            loss = loss_fn(module(xt[batch]), yt[batch])
            if proximal_mu > 0:
                drift = sum(((p - a) ** 2).sum() for p, a in zip(module.parameters(), anchor, strict=True))
                loss = loss + proximal_mu / 2 * drift
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(batch)
    module.eval()
    with torch.no_grad():
        acc = float((module(xt).argmax(1) == yt).float().mean())
    return {"loss": total / len(xt), "local_accuracy": acc}


def export(module: nn.Module, x_holdout: np.ndarray, y_holdout: np.ndarray, n_classes: int) -> tuple[bytes, dict]:
    """The fp32 ONNX graph (parity-checked against torch) and its metrics on the held-out set."""
    x = np.ascontiguousarray(x_holdout, dtype=np.float32)
    graph = optimize_fp32(export_onnx(module.eval(), torch.from_numpy(x[:2])).onnx_bytes)
    parity = check_parity(module, graph, x)
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    logits = session.run(None, {INPUT_NAME: x})[0]
    return graph, {"metrics": evaluate(logits, y_holdout, n_classes), "parity": parity.as_dict()}
