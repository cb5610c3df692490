"""fermion.imaging: the shared decode step and archives of pictures, on real files Pillow writes."""

from __future__ import annotations

import io
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

from fermion.events import ImageContract
from fermion.imaging import (
    BadArchive,
    CorruptImage,
    ImageTooLarge,
    Limits,
    UnsupportedImage,
    check_archive,
    decode,
    probe,
    read_archive,
)
from tests.helpers.pictures import bomb_png, gif, jpeg, png, zip_bytes

GRAY8 = ImageContract(height=8, width=8, channels=1)
RGB8 = ImageContract(height=8, width=8, channels=3)


def _noise(mode: str, size: tuple[int, int] = (20, 12), seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode)


@pytest.mark.parametrize(
    ("picture", "contract", "shape"),
    [
        (png(_noise("L")), GRAY8, (8, 8, 1)),
        (png(_noise("RGB")), GRAY8, (8, 8, 1)),
        (jpeg(_noise("RGB")), RGB8, (8, 8, 3)),
        (png(_noise("RGBA")), RGB8, (8, 8, 3)),
        (png(_noise("L")), RGB8, (8, 8, 3)),
        (png(_noise("RGB").convert("P")), GRAY8, (8, 8, 1)),
        (png(Image.fromarray(np.full((5, 6), 65535, np.uint16))), GRAY8, (8, 8, 1)),
    ],
    ids=["png-gray", "png-rgb-to-gray", "jpeg-rgb", "png-rgba-to-rgb", "gray-to-rgb", "palette", "16-bit"],
)
def test_any_mode_and_size_decodes_to_the_contract(picture: bytes, contract: ImageContract, shape: tuple) -> None:
    pixels = decode(picture, contract)
    assert pixels.shape == shape and pixels.dtype == np.uint8


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    wide = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    pixels = decode(png(Image.fromarray(wide)), ImageContract(height=1 + 3, width=4, resize="nearest"))
    assert set(np.unique(pixels)) <= {0, 100, 255} and pixels.max() == 255


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding() -> None:
    bomb = bomb_png(100_000, 100_000)
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"refused before decoding.*10000000000 pixels"):
        decode(bomb, GRAY8)
    assert time.perf_counter() - started < 0.5  # nothing was decompressed
    with pytest.raises(ImageTooLarge, match="over the limit of 1000"):
        probe(png(_noise("L", (100, 100))), max_pixels=1000)


def test_corrupt_truncated_empty_and_unsupported_pictures_name_the_problem() -> None:
    good = png(_noise("L", (64, 64)))
    with pytest.raises(CorruptImage, match="does not decode"):
        decode(good[: len(good) // 2], GRAY8)  # truncated
    with pytest.raises(CorruptImage, match="header is corrupt"):
        decode(good[:8] + b"\x00" * 64, GRAY8)
    with pytest.raises(CorruptImage, match="empty"):
        decode(b"", GRAY8)
    with pytest.raises(UnsupportedImage, match="unsupported format GIF"):
        decode(gif(_noise("L")), GRAY8)
    with pytest.raises(UnsupportedImage, match="not a PNG or JPEG picture"):
        decode(b"hello, not a picture", GRAY8)
    cmyk_tiff = io.BytesIO()
    _noise("RGB").save(cmyk_tiff, "TIFF")
    with pytest.raises(UnsupportedImage, match="TIFF"):
        decode(cmyk_tiff.getvalue(), GRAY8)
    animated = io.BytesIO()
    with pytest.raises(UnsupportedImage, match="animated PNG"):
        frames = [_noise("L", seed=i) for i in range(2)]
        frames[0].save(animated, "PNG", save_all=True, append_images=frames[1:])
        decode(animated.getvalue(), GRAY8)


def test_image_folder_archives_and_csv_archives_read_alike() -> None:
    pictures = {f"{c}/{i}.png": png(_noise("L", seed=10 * c + i)) for c in range(2) for i in range(3)}
    folders = zip_bytes({**{f"top/{k}": v for k, v in pictures.items()}, "top/README.txt": b"x"})
    rows = b"".join(f"{k},{k[0]}\n".encode() for k in pictures)
    table = zip_bytes({**pictures, "labels.csv": b"file,label\n" + rows})
    a, b = read_archive(folders, "zip", GRAY8), read_archive(table, "zip", GRAY8)
    assert a.labels == b.labels == ["0", "0", "0", "1", "1", "1"]
    np.testing.assert_array_equal(a.pixels, b.pixels)
    assert check_archive(folders, "zip") == {"pictures": 6, "classes": 2}
    inferred = read_archive(folders, "zip", None)
    assert (inferred.contract.height, inferred.contract.width, inferred.contract.channels) == (12, 20, 1)


def test_tar_archives_read_too() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for c in ("cat", "dog"):
            data = jpeg(_noise("RGB", seed=len(c)))
            info = tarfile.TarInfo(f"{c}/a.jpg")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert read_archive(buf.getvalue(), "tar", RGB8).pixels.shape == (2, 8, 8, 3)


@pytest.mark.parametrize(
    ("members", "limits", "problem"),
    [
        ({"a/1.png": b"", "b/1.png": b""}, Limits(), "a/1.png: the file is empty"),
        ({"a/1.png": bomb_png(4000, 20000), "b/1.png": b""}, Limits(), r"a/1.png: PNG of 4000x20000"),
        ({"a/1.png": png(_noise("L")), "b/1.gif": gif(_noise("L"))}, Limits(), "b/1.gif: not a picture"),
        ({"a/1.png": png(_noise("L")), "loose.png": png(_noise("L"))}, Limits(), "outside any class folder"),
        ({"a/1.png": png(_noise("L")), "b/": b""}, Limits(), "class folder 'b' holds no pictures"),
        ({"a/1.png": png(_noise("L"))}, Limits(), "1 class"),
        ({f"{c}/{i}.png": b"x" for c in "ab" for i in range(3)}, Limits(max_files=5), "more than 5 files"),
        ({"a/1.png": b"x" * 100, "b/1.png": b"x"}, Limits(max_total_bytes=50), "unpacks to 101 bytes"),
        ({"a/1.png": png(_noise("L")), "l.csv": b"file,label\nmissing.png,a\n"}, Limits(), "missing.png"),
    ],
    ids=["empty", "bomb", "gif", "loose", "empty-class", "one-class", "files", "bytes", "csv-missing"],
)
def test_bad_archives_are_refused_naming_the_file_and_problem(members: dict, limits: Limits, problem: str) -> None:
    with pytest.raises((BadArchive, CorruptImage, ImageTooLarge, UnsupportedImage), match=problem):
        check_archive(zip_bytes(members), "zip", limits)


def test_a_file_that_is_no_archive_is_refused() -> None:
    with pytest.raises(BadArchive, match="not a readable zip archive"):
        check_archive(b"PK\x03\x04 nonsense", "zip")
