"""One picture: bytes → checked header → decoded, converted, resized pixels (uint8, H x W x C).

The header is read first (`open_checked`): the format must be PNG or JPEG and width x height under
the pixel limit, so a file claiming 100k x 100k pixels is refused before a byte of it is decoded.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CorruptImage, ImageTooLarge, UnsupportedImage

if TYPE_CHECKING:  # the inference function never imports fermion.events (nats-py): its cold start counts
    from fermion.events import ImageContract

FORMATS = ("PNG", "JPEG")
DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photograph; far under what would exhaust memory
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N"})
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "P", "PA"})
# What other formats look like, to name them in the refusal.
_MAGIC = {b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"\x00\x00\x01\x00": "ICO"}
_OWN_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


class DecodeTarget(Protocol):
    """What the decode step needs of an image contract (fermion.events.ImageContract, or a DecodeSpec)."""

    @property
    def height(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def channels(self) -> int: ...
    @property
    def resize(self) -> str: ...


@dataclass(frozen=True)
class DecodeSpec:
    """The decode step's part of a recorded image contract (a manifest's `image`), read without pydantic."""

    height: int
    width: int
    channels: int
    resize: str = "bilinear"

    @classmethod
    def from_mapping(cls, contract: Mapping[str, Any]) -> DecodeSpec:
        """From an image contract as JSON; ValueError if it names what the decode step cannot do."""
        spec = cls(int(contract["height"]), int(contract["width"]), int(contract["channels"]), contract["resize"])
        if spec.channels not in (1, 3) or spec.resize not in RESAMPLE or min(spec.height, spec.width) < 1:
            raise ValueError(f"not an image contract the decode step can follow: {dict(contract)}")
        return spec


@dataclass(frozen=True)
class PictureInfo:
    """What a picture's header says."""

    format: str
    width: int
    height: int
    mode: str


def open_checked(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The picture opened lazily (header only), refused unless PNG/JPEG of at most `max_pixels`."""
    if not data:
        raise CorruptImage("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is below it
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"refused before decoding: {exc}") from exc  # past twice Pillow's own limit
    except UnidentifiedImageError as exc:
        if data.startswith(_OWN_MAGIC):
            raise CorruptImage("a PNG or JPEG whose header is corrupt") from exc
        webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        found = "WEBP" if webp else next((name for magic, name in _MAGIC.items() if data.startswith(magic)), None)
        if found is None:
            raise UnsupportedImage("not a PNG or JPEG picture (the format is not recognised)") from exc
        raise UnsupportedImage(f"unsupported format {found}: send PNG or JPEG") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"the header does not parse: {exc}") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImage(f"the header claims {width}x{height} pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{image.format} of {width}x{height} = {width * height} pixels is over the limit of {max_pixels}; "
            "refused before decoding"
        )
    if (frames := getattr(image, "n_frames", 1)) > 1:
        raise UnsupportedImage(f"an animated {image.format} ({frames} frames): send a still picture")
    if image.mode not in GRAY_MODES | COLOUR_MODES:
        raise UnsupportedImage(f"pixel mode {image.mode!r} has no conversion to grayscale or RGB")
    return image


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> PictureInfo:
    """Format, size and mode from the header alone."""
    image = open_checked(data, max_pixels)
    return PictureInfo(str(image.format), image.width, image.height, image.mode)


def load_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The whole picture decoded and EXIF-oriented, in its own mode; CorruptImage if it does not decode."""
    image = open_checked(data, max_pixels)
    try:
        image.load()  # truncated data raises here (Pillow's LOAD_TRUNCATED_IMAGES stays off)
        oriented = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"{image.format} does not decode: {exc}") from exc
    return oriented if oriented is not None else image


def decode(data: bytes, contract: DecodeTarget, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Picture bytes → uint8 pixels (height, width, channels) as the contract says."""
    image = _convert(load_pixels(data, max_pixels), contract.channels)
    size = (contract.width, contract.height)
    if image.size != size:
        image = image.resize(size, RESAMPLE[contract.resize])
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _convert(image: Image.Image, channels: int) -> Image.Image:
    """To "L" or "RGB"; 16-bit grey is scaled to 8 bits, alpha is dropped (as Pillow's convert does)."""
    if image.mode.startswith("I"):
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), "L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # a palette's transparency is kept apart from its colours first
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def infer_contract(infos: Iterable[PictureInfo]) -> ImageContract:
    """A contract for pictures that came without one: their most common size; grey if all are grey."""
    from fermion.events import ImageContract  # the trainer's and ingest's, never the inference function's

    seen = list(infos)
    if not seen:
        raise CorruptImage("no pictures to infer an image contract from")
    (width, height), _ = Counter((i.width, i.height) for i in seen).most_common(1)[0]
    grey = all(i.mode in GRAY_MODES for i in seen)
    return ImageContract(height=min(max(height, 4), 1024), width=min(max(width, 4), 1024), channels=1 if grey else 3)
