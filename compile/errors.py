"""Compile errors::

CompileError
├── ExportError   torch could not export the module to ONNX (every exporter tried failed)
└── ParityError   the ONNX graph disagrees with the torch module beyond the tolerance
"""


class CompileError(Exception):
    """Base of every compile error."""


class ExportError(CompileError):
    """No exporter could turn the module into a valid ONNX graph."""


class ParityError(CompileError):
    """ONNX Runtime and torch disagree on the same inputs: the export must not be registered."""
