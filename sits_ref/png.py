"""A small PNG encoder over numpy and zlib (no Pillow): grey, RGB or palette images.

A PNG file is a signature followed by chunks (length, type, data, CRC-32 of type and
data): IHDR (size, bit depth 8, colour type), PLTE (palette colours) and tRNS (palette
transparency) for palette images, IDAT (the zlib-compressed rows, each prefixed by a
filter byte; we use filter 0, "None", for every row) and IEND. That is all a viewer
needs; see the PNG specification (W3C, 3rd edition), sections 5 and 11.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from .atomic import atomic_path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, RGB, PALETTE = 0, 2, 3          # PNG colour types


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(image: np.ndarray, palette=None, transparent=None) -> bytes:
    """PNG bytes of a uint8 ``image``: (H, W) grey, (H, W, 3) RGB, or (H, W) indices
    into ``palette`` ((N, 3) uint8 colours, N <= 256).

    ``transparent``: for a palette image, the index drawn fully transparent (e.g. the
    nodata class 0 of a class map); None keeps every colour opaque.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG image must be uint8, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3 and palette is None:
        colour_type = RGB
    elif image.ndim == 2:
        colour_type = GREY if palette is None else PALETTE
    else:
        raise ValueError(f"PNG image must be (H, W) or (H, W, 3), got shape {image.shape}")
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f"PNG image must not be empty, got shape {image.shape}")
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    if colour_type == PALETTE:
        palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        if not 1 <= len(palette) <= 256 or image.max() >= len(palette):
            raise ValueError(f"palette of {len(palette)} colours for indices up to "
                             f"{image.max()} (at most 256 colours)")
        chunks.append(_chunk(b"PLTE", palette.tobytes()))
        if transparent is not None:
            alpha = np.full(len(palette), 255, np.uint8)
            alpha[transparent] = 0
            chunks.append(_chunk(b"tRNS", alpha[:transparent + 1].tobytes()))
    rows = np.ascontiguousarray(image).reshape(height, -1)
    filtered = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)  # filter 0
    chunks.append(_chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)))
    chunks.append(_chunk(b"IEND", b""))
    return SIGNATURE + b"".join(chunks)


def write_png(path, image: np.ndarray, palette=None, transparent=None) -> None:
    """Write :func:`encode_png` to ``path``, atomically (temporary name, then rename)."""
    data = encode_png(image, palette, transparent)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
