"""sits_ref.rasterize against GDAL, pixel for pixel (zero tolerance).

The expected rasters in tests/data/rasterize_fixture.npz and
tests/data/rasterize_overlap_fixture.npz were burnt by GDAL
(rasterio.features.rasterize) by tests/data/make_rasterize_fixture.py; this
file does not need rasterio.
"""
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from sits_ref import rasterize as rasterize_module
from sits_ref.rasterize import rasterize

FIXTURE = Path(__file__).parent / "data" / "rasterize_fixture.npz"
OVERLAP_FIXTURE = Path(__file__).parent / "data" / "rasterize_overlap_fixture.npz"
OVERLAP_CASES = ["irregular_s2", "irregular_odd", "boxes_unit", "boxes_southup"]
LATTICE = 16      # overlap fixture vertices are stored in 1/16 pixel
UNIT = (0.0, 1.0, 0.0, 10.0, 0.0, -1.0)   # 1 m pixels, row 0 at the top (y = 10)


@pytest.fixture(scope="module")
def fixture():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def _cases():
    with np.load(FIXTURE) as data:
        return json.loads(data["cases_json"].tobytes().decode())


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case["name"])
def test_matches_gdal(case, fixture):
    shapes = [(geometry, value) for geometry, value in case["shapes"]]
    ours = rasterize(shapes, case["out_shape"], case["transform"], dtype=case["dtype"])
    expected = fixture["expected_" + case["name"]]
    assert ours.dtype == expected.dtype
    assert np.array_equal(ours, expected), np.argwhere(ours != expected)[:10].tolist()


def parcel_shapes(lengths, first, delta, transform):
    """Rebuild the parcel geometries packed by make_rasterize_fixture.py (which imports
    this function, so both sides share one decoder)."""
    n = lengths[lengths > 0].astype(np.int64)
    ring = np.repeat(np.arange(len(n)), n)
    steps = np.cumsum(delta.astype(np.int64), axis=0)
    q = first[ring] + steps - steps[(np.cumsum(n) - n)[ring]]
    x0, dx, _, y0, _, dy = transform
    x = (x0 + (q[:, 0] * 0.25) * dx).tolist()
    y = (y0 + (q[:, 1] * 0.25) * dy).tolist()
    shapes, start = [], 0
    for i, row in enumerate(lengths):
        rings = []
        for m in row[row > 0].tolist():
            rings.append(list(zip(x[start:start + m], y[start:start + m])))
            start += m
        shapes.append(({"type": "Polygon", "coordinates": rings}, i % 255 + 1))
    return shapes


def test_matches_gdal_10000_parcels(fixture):
    transform = tuple(fixture["parcels_transform"].tolist())
    shapes = parcel_shapes(fixture["parcels_lengths"], fixture["parcels_first"],
                           fixture["parcels_delta"], transform)
    expected = fixture["parcels_expected"]
    ours = rasterize(shapes, expected.shape, transform)
    assert np.array_equal(ours, expected), np.argwhere(ours != expected)[:10].tolist()


def unpack_shapes(q, ring_length, part_rings, shape_parts, transform):
    """Rebuild the shapes packed by make_rasterize_fixture.py's ``pack_shapes``
    (which imports this function, so both sides share one decoder): values
    1, 2, ... in order; a shape of one part is a Polygon, else a MultiPolygon."""
    x0, dx, _, y0, _, dy = transform
    points = list(zip((x0 + (q[:, 0] / LATTICE) * dx).tolist(),
                      (y0 + (q[:, 1] / LATTICE) * dy).tolist()))
    def split(items, lengths):
        ends = np.cumsum(lengths).tolist()
        return [items[e - n:e] for e, n in zip(ends, np.asarray(lengths).tolist())]
    parts = split(split(points, ring_length), part_rings)
    shapes = []
    for i, part in enumerate(split(parts, shape_parts)):
        geometry = ({"type": "Polygon", "coordinates": part[0]} if len(part) == 1
                    else {"type": "MultiPolygon", "coordinates": part})
        shapes.append((geometry, i + 1))
    return shapes


@pytest.mark.parametrize("name", OVERLAP_CASES)
def test_matches_gdal_overlapping_shapes(name):
    """Irregular polygons (holes, MultiPolygons, partly outside) several deep,
    and boxes/triangles on pixel centres and edges: distinct uint16 values, so
    the later-shape-wins rule is checked on every overlap."""
    with np.load(OVERLAP_FIXTURE) as data:
        case = {key[len(name) + 1:]: data[key] for key in data.files if key.startswith(name + "_")}
    transform = tuple(case.pop("transform").tolist())
    expected = case.pop("expected")
    shapes = unpack_shapes(**case, transform=transform)
    ours = rasterize(shapes, expected.shape, transform, dtype=np.uint16)
    assert ours.dtype == expected.dtype
    assert np.array_equal(ours, expected), np.argwhere(ours != expected)[:10].tolist()


@pytest.mark.parametrize("band_pixels, band_crossings", [(1 << 22, 1), (1 << 22, 60), (3 * 64, 1 << 17)])
def test_matches_gdal_in_narrow_bands(band_pixels, band_crossings, monkeypatch):
    """Bands of 1 row, of ~60 crossings, of 3 rows: edges reaching across
    band boundaries are carried over, and horizontal edges found per band."""
    monkeypatch.setattr(rasterize_module, "BAND_PIXELS", band_pixels)
    monkeypatch.setattr(rasterize_module, "BAND_CROSSINGS", band_crossings)
    for name in OVERLAP_CASES:
        test_matches_gdal_overlapping_shapes(name)


def test_memory_is_output_plus_edges_not_crossings():
    """400 nested squares over a 4000 x 4000 grid: 1600 edges, 2.9 million
    crossings.  Holding them all as int64 keys would take 23 MB above the
    output (computing them all at once took 115 MB); band by band it is
    about 12 MB, whatever the number of crossings."""
    n, size = 400, 4000
    shapes = [({"type": "Polygon", "coordinates": [
        [(i, size - i), (size - i, size - i), (size - i, i), (i, i), (i, size - i)]]}, i + 1)
        for i in range(n)]
    crossings = sum(2 * (size - 2 * i) for i in range(n))
    tracemalloc.start()
    try:
        out = rasterize(shapes, (size, size), (0.0, 1.0, 0.0, float(size), 0.0, -1.0),
                        dtype=np.uint16)
        above_output = tracemalloc.get_traced_memory()[1] - out.nbytes
    finally:
        tracemalloc.stop()
    assert above_output < 8 * crossings, f"{above_output / 1e6:.1f} MB above the output"
    index = np.arange(size, dtype=np.int16)
    depth = np.minimum(index, size - 1 - index)   # square i covers pixels of depth >= i
    expected = np.minimum(np.minimum.outer(depth, depth), n - 1).astype(np.uint16) + 1
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("seed", range(5))
def test_paint_matches_painters_algorithm(seed):
    """``_paint`` (pieces + sparse table) against burning the spans one by one
    in polygon order, on random spans overlapping up to ~30 deep."""
    rng = np.random.default_rng(seed)
    size, n = 500, int(rng.integers(1, 400))
    start = rng.integers(0, size, n)
    end = np.minimum(start + rng.integers(1, 1 + [3, 40, size][seed % 3], n), size)
    polygon = np.sort(rng.integers(0, 60, n))
    value = rng.integers(0, 2**16, 61).astype(np.uint16)
    expected = np.full(size, value[0])
    for s, e, p in zip(start, end, polygon):
        expected[s:e] = value[1 + p]
    order = rng.permutation(n)                   # _paint needs no particular order
    ours = rasterize_module._paint(start[order], end[order], polygon[order], size, value)
    assert np.array_equal(ours, expected)


def square(c0, r0, c1, r1):
    """Closed ring of the rectangle of pixel columns [c0, c1) and rows [r0, r1) under UNIT."""
    return [(c0, 10 - r0), (c1, 10 - r0), (c1, 10 - r1), (c0, 10 - r1), (c0, 10 - r0)]


def test_square_on_pixel_edges_burns_exactly_its_pixels():
    out = rasterize([({"type": "Polygon", "coordinates": [square(3, 4, 5, 6)]}, 7)], (10, 10), UNIT)
    expected = np.zeros((10, 10), np.uint8)
    expected[4:6, 3:5] = 7
    assert np.array_equal(out, expected)


def test_square_with_hole():
    geometry = {"type": "Polygon", "coordinates": [square(1, 1, 9, 9), square(3, 3, 6, 6)]}
    out = rasterize([(geometry, 1)], (10, 10), UNIT, fill=5)
    expected = np.full((10, 10), 5, np.uint8)
    expected[1:9, 1:9] = 1
    expected[3:6, 3:6] = 5
    assert np.array_equal(out, expected)


def test_right_triangle_count():
    # Pixel-space vertices (0, 0), (8, 0), (0, 8): legs of 8 pixels along the
    # top and left borders, hypotenuse x + y = 8.  Scanline r samples
    # y = r + .5: the left leg crosses at x = 0, the hypotenuse at
    # x = 7.5 - r, rounded to the pixel boundary floor(x + .5) = 8 - r, so
    # columns [0, 8 - r) burn: the centre (7 - r + .5, r + .5) lying exactly on
    # the hypotenuse counts as inside.  Rows 0..7 burn 8 + 7 + ... + 1 = 36.
    ring = [(0, 10), (8, 10), (0, 2), (0, 10)]
    out = rasterize([({"type": "Polygon", "coordinates": [ring]}, 1)], (10, 10), UNIT)
    assert [int(n) for n in out.sum(axis=1)] == [8, 7, 6, 5, 4, 3, 2, 1, 0, 0]
    assert out.sum() == 36


def test_later_shapes_win_and_multipolygon_parts_union():
    first = {"type": "MultiPolygon", "coordinates": [[square(0, 0, 6, 6)], [square(3, 3, 9, 9)]]}
    second = {"type": "Polygon", "coordinates": [square(4, 4, 5, 5)]}
    out = rasterize([(first, 1), (second, 2)], (10, 10), UNIT)
    assert out[4, 4] == 2 and out[3, 3] == 1 and out[8, 8] == 1 and out[0, 9] == 0


def test_outside_grid_and_other_dtypes():
    outside = {"type": "Polygon", "coordinates": [square(-5, -5, -1, -1)]}
    partly = {"type": "Polygon", "coordinates": [square(-5, 8, 3, 20)]}
    out = rasterize([(outside, 1), (partly, 300)], (10, 10), UNIT, dtype=np.uint16)
    assert out.dtype == np.uint16 and out.sum() == 300 * 6


@pytest.mark.parametrize("geometry, message", [
    ({"type": "Point", "coordinates": (1, 2)}, "'Point'"),
    ({"type": "LineString", "coordinates": [(0, 0), (1, 1)]}, "'LineString'"),
    ({"coordinates": [square(1, 1, 2, 2)]}, "None"),
    ("POLYGON ((0 0, 1 0, 1 1, 0 0))", "None"),
    ({"type": "Polygon", "coordinates": []}, "malformed Polygon"),
    ({"type": "Polygon", "coordinates": [[(0, 0), (1, 0), (0, 0)]]}, "malformed Polygon"),
    ({"type": "MultiPolygon", "coordinates": [[]]}, "malformed MultiPolygon"),
])
def test_bad_geometry_raises(geometry, message):
    with pytest.raises(ValueError, match=message):
        rasterize([(geometry, 1)], (10, 10), UNIT)


def test_rotated_transform_raises():
    geometry = {"type": "Polygon", "coordinates": [square(1, 1, 2, 2)]}
    with pytest.raises(ValueError, match="north-up"):
        rasterize([(geometry, 1)], (10, 10), (0.0, 1.0, 0.5, 10.0, 0.0, -1.0))
