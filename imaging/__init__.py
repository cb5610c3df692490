"""Pictures to pixels: the one decode step the trainer and the inference function share.

A layer of its own (`fermion.imaging`, Pillow and numpy, and the contract from `fermion.events`):
the trainer decodes a dataset's pictures with it and the inference function a request's, so the
two can never drift apart. What follows the decode (scale, normalise, layout) is in the exported
ONNX graph; bench/images.py measured Pillow's resize against ONNX Runtime's and chose Pillow.
"""

from .archives import Limits, Picture, PictureSet, check_archive, read_archive
from .errors import BadArchive, CorruptImage, ImageError, ImageTooLarge, UnsupportedImage
from .pictures import (
    DEFAULT_MAX_PIXELS,
    DecodeSpec,
    DecodeTarget,
    PictureInfo,
    decode,
    infer_contract,
    open_checked,
    probe,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "BadArchive",
    "CorruptImage",
    "DecodeSpec",
    "DecodeTarget",
    "ImageError",
    "ImageTooLarge",
    "Limits",
    "Picture",
    "PictureInfo",
    "PictureSet",
    "UnsupportedImage",
    "check_archive",
    "decode",
    "infer_contract",
    "open_checked",
    "probe",
    "read_archive",
]
