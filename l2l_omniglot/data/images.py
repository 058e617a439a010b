"""The one place where an image becomes pixels.

Pixel convention: **ink = 1, background = 0**. Omniglot's PNGs draw black ink
on white paper; every path in omnimeta (the archives, HW15 test folders,
Lake's 20-way runs) goes through :func:`to_uint8`, which inverts them, and
:func:`to_float`, which scales to ``[0, 1]``. A zero background suits
zero-padded convolutions, and a model trained on one source sees the same
numbers from every other.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from l2l_omniglot.errors import DataError

DEFAULT_IMAGE_SIZE = 28


def to_uint8(image: Image.Image, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Grayscale, resize to ``size`` x ``size`` (LANCZOS) and invert: ink = 255."""
    gray = image.convert("L")
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.LANCZOS)
    return 255 - np.asarray(gray, dtype=np.uint8)


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 images ``[..., H, W]`` to float ``[..., 1, H, W]`` in ``[0, 1]``, ink = 1."""
    return pixels.unsqueeze(-3).float().div_(255.0)


def load_png(path_or_file, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Decode one image file fully (so truncation is detected here) into ink = 255 uint8."""
    with Image.open(path_or_file) as image:
        image.load()
        return to_uint8(image, size)


def decode_image(source, name: str, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """:func:`load_png`, with a damaged file reported as a DataError that names ``name``."""
    try:
        return load_png(source, size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"image {name} cannot be decoded ({error}); replace it")
