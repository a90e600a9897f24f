"""Blank-page detection on a screenshot: (nearly) every pixel is the background colour.

A component that throws while rendering, or renders nothing, leaves the page's background alone; one
word of text already changes a few hundred pixels, so the threshold is small and absolute.
"""

from __future__ import annotations

import io

from PIL import Image, ImageChops

TOLERANCE = 8
"""Per-channel difference still counted as the background (compression-free PNGs differ by 0; anti-aliasing by more)."""
MAX_FOREGROUND_FRACTION = 0.00005
MIN_FOREGROUND_PIXELS = 24


def foreground_pixels(png: bytes) -> tuple[int, int]:
    """(pixels that differ from the most common colour, all pixels)."""
    with Image.open(io.BytesIO(png)) as image:
        rgb = image.convert("RGB")
    total = rgb.width * rgb.height
    # The background: the commonest colour of a nearest-neighbour thumbnail (a full-size count costs ~15 ms)
    thumbnail = rgb.resize((max(1, rgb.width // 16), max(1, rgb.height // 16)), Image.Resampling.NEAREST)
    colours = thumbnail.getcolors(maxcolors=thumbnail.width * thumbnail.height)
    background = max(colours, key=lambda item: item[0])[1] if colours else (255, 255, 255)
    red, green, blue = ImageChops.difference(rgb, Image.new("RGB", rgb.size, background)).split()
    largest = ImageChops.lighter(red, ImageChops.lighter(green, blue))  # the largest channel difference
    histogram = largest.point(lambda value: 255 if value > TOLERANCE else 0).histogram()
    return histogram[255], total


def is_blank(png: bytes) -> bool:
    foreground, total = foreground_pixels(png)
    return foreground < max(MIN_FOREGROUND_PIXELS, total * MAX_FOREGROUND_FRACTION)
