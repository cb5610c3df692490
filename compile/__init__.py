"""torch → ONNX export and parity verification."""

from .errors import CompileError, ExportError, ParityError
from .export import INPUT_NAME, OPSET, OUTPUT_NAME, Exported, export_onnx
from .optimize import convert_fp16, optimize_fp32, quantize_int8
from .validate import InvalidModel, ValidatedModel, validate_onnx
from .variants import VARIANT_FILES, Compiled, compile_variants
from .verify import ParityReport, check_parity

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
