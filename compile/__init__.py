"""torch → ONNX export and parity verification."""

from .errors import CompileError, ExportError, ParityError
from .export import INPUT_NAME, OPSET, OUTPUT_NAME, Exported, export_onnx
from .verify import ParityReport, check_parity

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "OUTPUT_NAME",
    "CompileError",
    "ExportError",
    "Exported",
    "ParityError",
    "ParityReport",
    "check_parity",
    "export_onnx",
]
