"""The one place where an image becomes pixels.

Pixel convention: **ink = 1, background = 0**. Omniglot's PNGs draw black ink
on white paper; every path in omnimeta (the archives, HW15 test folders,
Lake's 20-way runs) goes through :func:`to_uint8`, which inverts them, and
:func:`to_float`, which scales to ``[0, 1]``. A zero background suits
zero-padded convolutions, and a model trained on one source sees the same
numbers from every other.
"""
from __future__ import annotations

import math
import os
import random
import stat
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from l2l_omniglot.errors import DataError

DEFAULT_IMAGE_SIZE = 28

#: The longest side, in pixels, of an image omnimeta agrees to decode. Omniglot's
#: drawings are 105x105 and HW15's 28x28; even a 300-dpi scan of a whole A4 page
#: (2480x3508) fits under it. Every image is shrunk to ``size`` x ``size`` anyway,
#: so a larger one holds nothing a model could use, while its pixels would cost
#: up to 64 MiB (4096 * 4096 * RGBA) each. Larger images, and the decompression
#: bombs Pillow itself flags, are refused from their header, before any pixel
#: is decoded.
MAX_IMAGE_SIDE = 4096

#: The largest image file, in bytes, read into memory from an archive (a PNG
#: of the largest allowed image is well under it; an Omniglot PNG is ~300 bytes).
MAX_IMAGE_BYTES = 64 << 20

#: What Pillow raises for a file it cannot decode: not an image
#: (``UnidentifiedImageError``, an ``OSError``), truncated (``OSError``), a
#: malformed header or chunk (``SyntaxError``, ``ValueError``, ``EOFError``,
#: ``struct.error``, ``IndexError``, ``ZeroDivisionError``), a decompression bomb
#: (``DecompressionBombError``, and ``DecompressionBombWarning``, which
#: :func:`decode_image` turns into an error).
PILLOW_FAILURES = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, ZeroDivisionError,
                   Image.DecompressionBombError, Image.DecompressionBombWarning)


def to_uint8(image: Image.Image, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Grayscale, resize to ``size`` x ``size`` (LANCZOS) and invert: ink = 255."""
    gray = image.convert("L")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.LANCZOS)
    return 255 - np.asarray(gray, dtype=np.uint8)


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images ``[..., H, W]`` to float ``[..., 1, H, W]`` in ``[0, 1]``, ink = 1."""
    return pixels.unsqueeze(-3).float().div_(255.0)


#: The small random affine maps of ``--augment distort``, after Koch, Zemel and Salakhutdinov (2015, Siamese
#: networks on Omniglot): rotation within +-10 degrees, shear within +-0.3 radians on each axis, scale in
#: [0.8, 1.2], and a shift of up to 2 of Omniglot's 105 pixels. A distorted drawing stands for another hand
#: drawing the same character, not for a new character.
DISTORTION_DEGREES = 10.0
DISTORTION_SHEAR = 0.3
DISTORTION_SCALE = (0.8, 1.2)
DISTORTION_SHIFT = 2 / 105


def distort(image: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """``image [1, S, S]`` (ink = 1) under one random affine map of the ranges above, drawn from ``rng``."""
    # Imported here, not with the module: torchvision costs a command 0.9 s to start (it imports torch._dynamo),
    # and only runs with --augment distort use it.
    from torchvision.transforms.v2 import functional as image_ops

    shear = math.degrees(DISTORTION_SHEAR)
    shift = DISTORTION_SHIFT * image.shape[-1]
    return image_ops.affine(image, angle=rng.uniform(-DISTORTION_DEGREES, DISTORTION_DEGREES),
                            translate=[rng.uniform(-shift, shift), rng.uniform(-shift, shift)],
                            scale=rng.uniform(*DISTORTION_SCALE),
                            shear=[rng.uniform(-shear, shear), rng.uniform(-shear, shear)],
                            interpolation=image_ops.InterpolationMode.BILINEAR, fill=0.0)


class ImageTooLarge(ValueError):
    """An image whose header gives a side above :data:`MAX_IMAGE_SIDE`."""


def load_png(path_or_file, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Decode one image file fully (so truncation is detected here) into ink = 255 uint8.

    An image with a side above :data:`MAX_IMAGE_SIDE` raises
    :class:`ImageTooLarge` from its header, before its pixels are decoded.
    """
    with Image.open(path_or_file) as image:
        width, height = image.size
        if max(width, height) > MAX_IMAGE_SIDE:
            raise ImageTooLarge(f"{width}x{height} pixels")
        image.load()
        return to_uint8(image, size)


def _one_line(error: BaseException) -> str:
    """An exception as a short single line: its first line, else its type's name."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def decode_image(source, name: str, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """:func:`load_png`, with every failure a one-line DataError that names ``name`` and the fix.

    ``source`` is a path or a binary file object. A path must be a readable
    regular file (a directory, a FIFO or a device named like an image is
    refused without being opened). Any failure Pillow reports
    (:data:`PILLOW_FAILURES`), a decompression bomb and an image larger than
    :data:`MAX_IMAGE_SIDE` become a DataError; Pillow's other warnings are
    silenced, so a bad file costs the user one line, never a traceback.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise DataError(f"image {name} is missing (or a link to nothing); put the image there") from None
        except OSError as error:
            raise DataError(f"image {name} cannot be read ({error.strerror}); "
                            f"make it readable or replace it") from None
        if stat.S_ISDIR(mode):
            raise DataError(f"image {name} is a directory, not an image file; replace it with the image")
        if not stat.S_ISREG(mode):
            raise DataError(f"image {name} is not a regular file; replace it with the image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return load_png(source, size)
    except ImageTooLarge as error:
        raise DataError(f"image {name} is too large to decode ({error}, above {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}); "
                        f"replace it with a drawing of at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"image {name} is too large to decode, a likely decompression bomb ({_one_line(error)}); "
                        f"replace it with a drawing of at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels") from None
    except PermissionError as error:
        raise DataError(f"image {name} cannot be read ({error.strerror}); make it readable or replace it") from None
    except PILLOW_FAILURES as error:
        raise DataError(f"image {name} cannot be decoded ({_one_line(error)}); replace it") from None


def refuse_oversized(nbytes: int, name: str) -> None:
    """A DataError for an image file above :data:`MAX_IMAGE_BYTES`, checked before it is read into memory."""
    if nbytes > MAX_IMAGE_BYTES:
        raise DataError(f"image {name} is {nbytes} bytes, more than the {MAX_IMAGE_BYTES >> 20} MiB "
                        f"an image may take; replace it")
