"""fermion_edge: verify a signed Fermion edge bundle and run its model. Needs only onnxruntime and numpy."""

from .archive import Bundle, BundleRefused, open_bundle

__all__ = ["Bundle", "BundleRefused", "open_bundle"]
__version__ = "1"
