import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from l2l_omniglot.data.images import MAX_IMAGE_SIDE, decode_image, load_png, to_float, to_uint8
from l2l_omniglot.errors import DataError


def test_ink_is_one_and_background_zero():
    page = np.full((105, 105), 255, dtype=np.uint8)  # white paper
    page[40:60, 40:60] = 0  # black ink
    pixels = to_uint8(Image.fromarray(page), size=28)
    values = to_float(torch.from_numpy(pixels))
    assert values.shape == (1, 28, 28)
    assert values[0, 0, 0] == 0.0
    assert values[0, 14, 14] == 1.0


def test_one_bit_and_rgb_images_give_the_same_pixels():
    page = np.full((28, 28), 255, dtype=np.uint8)
    page[5:20, 10:12] = 0
    one_bit = Image.fromarray(page).convert("1")
    rgb = Image.fromarray(page).convert("RGB")
    assert np.array_equal(to_uint8(one_bit), to_uint8(rgb))


def test_truncated_png_is_detected():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((105, 105), dtype=np.uint8)).save(buffer, format="PNG")
    truncated = io.BytesIO(buffer.getvalue()[:60])
    try:
        load_png(truncated)
    except (OSError, SyntaxError):
        return
    raise AssertionError("a truncated PNG decoded without error")


def test_an_image_above_the_side_limit_is_refused_before_its_pixels_are_decoded(monkeypatch):
    def no_decoding(self):
        raise AssertionError("the pixels of a refused image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    big = Image.new("1", (MAX_IMAGE_SIDE + 1, 8))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    with pytest.raises(DataError, match=r"big.png is too large to decode \(4097x8 pixels"):
        decode_image(io.BytesIO(buffer.getvalue()), "big.png")


def test_an_image_at_the_side_limit_decodes():
    page = Image.new("L", (MAX_IMAGE_SIDE, 16), 255)
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    assert decode_image(io.BytesIO(buffer.getvalue()), "wide.png").shape == (28, 28)
