"""torch → ONNX export and parity verification, and validation of pushed ONNX files.

Names load their module on first use (PEP 562): `fermion.compile.validate` (onnx only) is imported
by the ingest function, which must not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import CompileError, ExportError, ParityError
    from .export import INPUT_NAME, OPSET, OUTPUT_NAME, Exported, export_onnx
    from .optimize import convert_fp16, optimize_fp32, quantize_int8
    from .validate import InvalidModel, ValidatedModel, validate_onnx
    from .variants import VARIANT_FILES, Compiled, compile_variants
    from .verify import ParityReport, check_parity

_EXPORTS = {
    "CompileError": "errors",
    "ExportError": "errors",
    "ParityError": "errors",
    "INPUT_NAME": "export",
    "OPSET": "export",
    "OUTPUT_NAME": "export",
    "Exported": "export",
    "export_onnx": "export",
    "convert_fp16": "optimize",
    "optimize_fp32": "optimize",
    "quantize_int8": "optimize",
    "InvalidModel": "validate",
    "ValidatedModel": "validate",
    "validate_onnx": "validate",
    "VARIANT_FILES": "variants",
    "Compiled": "variants",
    "compile_variants": "variants",
    "ParityReport": "verify",
    "check_parity": "verify",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "VARIANT_FILES",
    "CompileError",
    "Compiled",
    "ExportError",
    "Exported",
    "InvalidModel",
    "ParityError",
    "ParityReport",
    "ValidatedModel",
    "check_parity",
    "compile_variants",
    "convert_fp16",
    "export_onnx",
    "optimize_fp32",
    "quantize_int8",
    "validate_onnx",
]
