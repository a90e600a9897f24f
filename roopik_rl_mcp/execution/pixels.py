"""Blank-page detection on a screenshot: a render that shows nothing is a failure, not a pass."""

from __future__ import annotations

import io

TOLERANCE = 8
"""How far (0-255, per channel) a pixel may differ from the background and still count as background."""
MIN_INK_SHARE = 0.0001
"""A page is blank when fewer than this share of its pixels (and fewer than MIN_INK_PIXELS) differ from it."""
MIN_INK_PIXELS = 40


def is_blank(png: bytes) -> bool:
    """True when (nearly) every pixel equals the most common colour, the page's background.

    Compared at full resolution: one short word of text is a few hundred pixels, which downscaling loses.
    """
    from PIL import Image, ImageChops

    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    total = rgb.width * rgb.height
    background = max(rgb.getcolors(total), key=lambda pair: pair[0])[1]
    difference = ImageChops.difference(rgb, Image.new("RGB", rgb.size, background)).convert("L")
    ink = total - sum(difference.histogram()[: TOLERANCE + 1])
    return ink < max(MIN_INK_PIXELS, MIN_INK_SHARE * total)
