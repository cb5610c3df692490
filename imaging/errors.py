"""Why a picture or an archive of pictures was refused; each message names the problem::

ImageError (ValueError)
├── UnsupportedImage    not PNG or JPEG, animated, or a pixel mode that has no conversion
├── CorruptImage        empty, corrupt or truncated: it does not decode
├── ImageTooLarge       its header claims more pixels than allowed: refused before decoding
└── BadArchive          the archive: unreadable, over a limit, or not laid out as a dataset
"""

from __future__ import annotations


class ImageError(ValueError):
    """Base of every picture refusal."""


class UnsupportedImage(ImageError):
    """A format or mode the contract cannot take."""


class CorruptImage(ImageError):
    """The bytes do not decode to a picture."""


class ImageTooLarge(ImageError):
    """More pixels than the limit (a decompression bomb, or simply too big)."""


class BadArchive(ImageError):
    """The archive cannot be read as a dataset of pictures."""
