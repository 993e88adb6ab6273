"""Pictures: the PNG encoder, quicklooks (block mode / mean, streamed), the figures.

PNG files are checked with a decoder written here from the PNG specification (chunk
CRCs, zlib, the five row filters, palette and transparency), independent of the
encoder, and with Pillow where it is installed (it comes with matplotlib).
"""
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from sits_ref import quicklook
from sits_ref.dataset import load_dataset
from sits_ref.geotiff import GeoRef, write_geotiff
from sits_ref.png import encode_png, write_png
from sits_ref.quicklook import (block_mean, block_mode, class_map_quicklook,
                                confidence_quicklook, reduction_factor, rgb_bands,
                                rgb_quicklook, stretch)
from sits_ref.report import busiest_window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data_sample", "manifest.json")
REF = GeoRef((300000.0, 10.0, 0.0, 4900000.0, 0.0, -10.0), 32631)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def decode_png(data: bytes) -> dict:
    """{'pixels': (H, W) or (H, W, 3 or 4) uint8, 'palette', 'alpha'} of a
    non-interlaced 8-bit grey / RGB / palette / RGBA PNG, every chunk CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and interlace == 0
    channels = {0: 1, 2: 3, 3: 1, 6: 4}[colour]       # 6: RGBA, as matplotlib writes
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    rows, prev = [], [0] * stride
    for r in range(height):
        kind, line = raw[r * (stride + 1)], list(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, upleft = prev[i], prev[i - channels] if i >= channels else 0
            add = [0, left, up, (left + up) // 2, _paeth(left, up, upleft)][kind]
            line[i] = (line[i] + add) % 256
        rows.append(line)
        prev = line
    pixels = np.array(rows, np.uint8).reshape((height, width) + ((channels,) if channels > 1
                                                                 else ()))
    found = dict(chunks)
    palette = np.frombuffer(found[b"PLTE"], np.uint8).reshape(-1, 3) if b"PLTE" in found \
        else None
    alpha = np.frombuffer(found[b"tRNS"], np.uint8) if b"tRNS" in found else None
    return {"pixels": pixels, "palette": palette, "alpha": alpha}


def read_png(path) -> dict:
    with open(path, "rb") as f:
        return decode_png(f.read())


def png_size(path) -> tuple:
    """(width, height) from the IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    return struct.unpack(">II", head[16:24])


# ---------------------------------------------------------------- PNG encoder

def test_grey_png_decodes_to_its_pixels():
    image = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
    assert np.array_equal(decode_png(encode_png(image))["pixels"], image)


def test_rgb_png_decodes_to_its_pixels():
    image = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    out = decode_png(encode_png(image))
    assert np.array_equal(out["pixels"], image) and out["palette"] is None


def test_palette_png_keeps_indices_colours_and_transparent_nodata():
    image = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    colours = [(0, 0, 0), (230, 0, 77), (35, 139, 35)]
    out = decode_png(encode_png(image, palette=colours, transparent=0))
    assert np.array_equal(out["pixels"], image)
    assert out["palette"].tolist() == [list(c) for c in colours]
    assert out["alpha"].tolist() == [0]       # index 0 transparent, the others opaque


def test_png_decodes_with_pillow_too(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    image = np.random.default_rng(1).integers(0, 256, (9, 4, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", image)
    write_png(tmp_path / "b.png", np.array([[3, 1]], np.uint8), palette=[(9, 9, 9)] * 4)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)
    assert np.asarray(Image.open(tmp_path / "b.png")).tolist() == [[3, 1]]


@pytest.mark.parametrize("image, palette, message", [
    (np.zeros((2, 2), np.float32), None, "uint8"),
    (np.zeros((2, 2, 4), np.uint8), None, "shape"),
    (np.zeros((0, 3), np.uint8), None, "empty"),
    (np.full((2, 2), 5, np.uint8), [(0, 0, 0)] * 3, "palette of 3 colours"),
])
def test_bad_png_input_is_refused(image, palette, message):
    with pytest.raises(ValueError, match=message):
        encode_png(image, palette)


# ---------------------------------------------------------------- downsampling

def test_reduction_factor_keeps_the_long_side_within_the_limit():
    assert reduction_factor(10980, 10980) == 6          # 10980 / 2048 = 5.4 -> 1830 px
    assert reduction_factor(2048, 100) == 1
    assert reduction_factor(10, 2049) == 2
    assert reduction_factor(5, 5, max_side=2) == 3


def test_block_mode_by_hand():
    classes = np.array([[1, 1, 0, 0, 2],
                        [2, 0, 0, 3, 2],
                        [2, 3, 0, 0, 0],
                        [3, 2, 0, 0, 0],
                        [4, 4, 5, 0, 0]], np.uint8)
    # blocks of 2: [1 1 2 0] -> 1; [0 0 0 3] -> 3 (nodata not counted); edge [2 2] -> 2;
    # [2 3 3 2] tie -> 2 (smaller); [0 0 0 0] -> 0; edge [0 0] -> 0; bottom [4 4] -> 4,
    # [5 0] -> 5, corner [0] -> 0.
    assert block_mode(classes, 2).tolist() == [[1, 3, 2], [2, 0, 0], [4, 5, 0]]


def test_block_mean_by_hand():
    values = np.array([[1.0, 3.0, 9.0], [5.0, 7.0, 9.0]])
    valid = np.array([[True, True, False], [True, False, False]])
    mean, ok = block_mean(values, valid, 2)
    assert mean.tolist() == [[3.0, 0.0]] and ok.tolist() == [[True, False]]


def test_class_quicklook_streams_in_bands_with_the_same_result(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 6, (301, 47), dtype=np.uint8)
    write_geotiff(tmp_path / "map.tif", codes, REF, nodata=0)
    monkeypatch.setattr(quicklook, "READ_ROWS", 7)     # 6-row bands: many seams
    colors = {1: (230, 0, 77), 2: (35, 139, 35), 3: (128, 255, 0), 4: (9, 9, 9), 5: (1, 2, 3)}
    shape = class_map_quicklook(tmp_path / "map.tif", tmp_path / "map.png", colors,
                                max_side=101)
    out = read_png(tmp_path / "map.png")
    assert shape == (101, 16) == out["pixels"].shape             # factor 3
    assert np.array_equal(out["pixels"], block_mode(codes, 3))
    assert out["palette"][2].tolist() == [35, 139, 35] and out["alpha"].tolist() == [0]


def test_confidence_quicklook_is_the_block_mean_in_grey(tmp_path):
    conf = np.array([[0.5, 1.0, 0.2, 0.0], [0.5, 1.0, 0.0, 0.0]], np.float32)
    write_geotiff(tmp_path / "c.tif", conf, REF)
    confidence_quicklook(tmp_path / "c.tif", tmp_path / "c.png", max_side=2)
    # block 1: mean 0.75 -> 191; block 2: the single valid value 0.2 -> 51
    assert read_png(tmp_path / "c.png")["pixels"].tolist() == [[191, 51]]


def test_stretch_maps_percentiles_to_black_and_white():
    channel = np.arange(101, dtype=np.float64).reshape(1, 101)
    rgb = np.stack([channel, channel, 2 * channel])
    valid = np.ones((1, 101), bool)
    valid[0, 50] = False
    out = stretch(rgb, valid)
    # percentiles of 0..100 without 50: 2 % -> 2.0, 98 % -> 98.0; 26 -> (24/96)*255
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 100].tolist() == [255, 255, 255]
    assert out[0, 26, 0] == 64 and out[0, 50].tolist() == [0, 0, 0]


def test_rgb_quicklook_of_the_sample_streams_like_a_whole_read(tmp_path, monkeypatch):
    dataset = load_dataset(SAMPLE)
    rgb, valid = rgb_bands(dataset, 5)
    means = [block_mean(c, valid, 4) for c in rgb]
    expected = stretch(np.stack([m for m, _ in means]), means[0][1])
    monkeypatch.setattr(quicklook, "READ_BUDGET_MB", 0.5)     # bands of a few rows
    rgb_quicklook(dataset, 5, tmp_path / "rgb.png", max_side=64)
    out = read_png(tmp_path / "rgb.png")["pixels"]
    assert out.shape == (64, 64, 3) and np.array_equal(out, expected)
    assert out.std() > 20                                      # a picture, not a flat grey


def test_rgb_needs_the_visible_bands(tiny_dataset):
    dataset = load_dataset(tiny_dataset)
    dataset.bands = ["B8", "B11"]
    with pytest.raises(ValueError, match="no band B4, B3, B2"):
        rgb_bands(dataset, 0)


def test_busiest_window_by_hand():
    # cells of 4 px on a 40 x 40 grid, window 16 = 4 cells. Centres: (2, 2) in cell
    # (0, 0), weight 25; (30, 30), (32, 28), (27, 32) in cells (7, 7), (8, 7), (6, 8),
    # weights 16 + 16 + 12 = 44. Windows starting at cell rows 5-6 and columns 5-7 hold
    # all three; the first is cell (5, 5), pixel (20, 20).
    windows = [(0, 0, 5, 5), (28, 28, 4, 4), (30, 26, 4, 4), (26, 30, 3, 4)]
    assert busiest_window(windows, 40, 40, size=16) == (20, 20, 16, 16)
    assert busiest_window(windows[:2], 40, 40, size=16) == (0, 0, 16, 16)
    assert busiest_window([], 10, 30, size=16) == (0, 0, 10, 16)


# ---------------------------------------------------------------- figures

@pytest.fixture
def figures():
    pytest.importorskip("matplotlib")
    from sits_ref import figures
    return figures


def _profiles(n_classes=3, dates=("2018-01-15", "2018-04-15", "2018-07-15")):
    features = ["B2", "B4", "B8", "B12", "NDVI", "NDWI", "BI"]
    rng = np.random.default_rng(0)
    shape = (n_classes, len(features), len(dates))
    return {"features": features, "dates": list(dates), "count": [10, 0, 5][:n_classes],
            "mean": rng.random(shape).tolist(), "std": rng.random(shape).tolist(),
            "normalised_mean": rng.random(shape).tolist(),
            "normalised_std": rng.random(shape).tolist()}


NAMES = ["Built up", "Water", "Woodland broad-leaved trees"]
COLORS = [(230, 0, 77), (0, 128, 255), (128, 255, 0)]


def test_figure7_has_a_panel_per_index(figures, tmp_path):
    figures.profiles_figure(tmp_path / "f7.png", _profiles(), NAMES, COLORS)
    assert png_size(tmp_path / "f7.png") == (4 * 450, 450)       # NDVI, NDWI, BI, B12


def test_figure8_has_a_panel_per_class_with_pixels(figures, tmp_path):
    figures.normalised_profiles_figure(tmp_path / "f8.png", _profiles(), NAMES, ncol=4)
    assert png_size(tmp_path / "f8.png") == (1600, 400)           # 1 row of 4, + legend


def test_figure9_places_panels_in_rows(figures, tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    panels = [(f"model {k}", image) for k in range(6)]
    figures.maps_figure(tmp_path / "f9.png", panels, NAMES, COLORS, ncol=4)
    assert png_size(tmp_path / "f9.png") == (1400, 800)           # 2 rows of 4 columns


def test_confusion_figure_has_a_panel_per_split(figures, tmp_path):
    cm = [[5, 1, 0], [0, 3, 0], [2, 0, 7]]
    figures.confusion_figure(tmp_path / "cm.png", {"validation": cm, "test": cm}, NAMES, "M")
    assert png_size(tmp_path / "cm.png") == (1200, 600)


def test_training_curves_mark_the_best_epoch(figures, tmp_path):
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_f1": 0.5 + e / 20}
               for e in range(1, 6)]
    runs = [{"run": 0, "history": history, "best_epoch": 5},
            {"run": 1, "history": history[:2], "best_epoch": 0}]   # never scored: no star
    figures.training_curves_figure(tmp_path / "t.png", runs, "TempCNN")
    assert png_size(tmp_path / "t.png") == (1000, 400)
    assert read_png(tmp_path / "t.png")["pixels"].std() > 10


def test_the_core_never_imports_matplotlib():
    modules = [f[:-3] for f in os.listdir(os.path.join(ROOT, "sits_ref"))
               if f.endswith(".py") and f not in ("__init__.py", "figures.py")]
    script = ("import sys, run_benchmark\n"
              + "".join(f"import sits_ref.{m}\n" for m in modules)
              + "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
