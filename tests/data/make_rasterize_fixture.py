"""Dev-only: regenerate tests/data/rasterize_fixture.npz with GDAL (rasterio).

Needs rasterio (which bundles GDAL); the tests that read the fixture do not.
Everything is deterministic (fixed seed).  The fixture holds, for each case,
the input shapes and the raster GDAL burns from them with
``rasterio.features.rasterize`` (pixel-centre rule, all_touched=False):

* ``cases_json``: UTF-8 JSON bytes, a list of hand-made boundary cases and
  small random cases, each ``{"name", "out_shape", "transform", "dtype",
  "shapes": [[geometry, value], ...]}`` (transform in GDAL order), and
  ``expected_<name>``: GDAL's output for it;
* ``parcels_*``: ~10,000 random parcel-like polygons on a 2000 x 2000 grid,
  stored compactly as vertex coordinates in quarter pixels (see ``parcels``;
  ``parcel_shapes`` in tests/test_rasterize.py, imported here, rebuilds the
  geometries bit for bit), and ``parcels_expected``.

and tests/data/rasterize_overlap_fixture.npz holds small versions of the
benchmark's cases (tests/benchmarks/bench_rasterize.py), burnt into uint16
with a distinct value per shape so that every overlap shows: irregular
polygons with 20-200 vertices, some with a hole, some MultiPolygons, many
partly outside the grid, overlapping several deep; and boxes and triangles
with vertices on pixel centres and pixel edges.  For each case ``<name>_*``:
the shapes packed as vertex coordinates in 1/16 pixel (see ``pack_shapes``;
``unpack_shapes`` in tests/test_rasterize.py rebuilds them bit for bit),
``<name>_transform`` and ``<name>_expected``.

    python tests/data/make_rasterize_fixture.py
"""
import json
import sys
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio import features

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_rasterize import LATTICE, parcel_shapes, unpack_shapes  # noqa: E402  the test decodes

OUT = Path(__file__).with_name("rasterize_fixture.npz")
OVERLAP_OUT = Path(__file__).with_name("rasterize_overlap_fixture.npz")
OVERLAP_SIZE = 64
PARCEL_SIZE = 2000
PARCEL_TRANSFORM = (600000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0)


def gdal_rasterize(shapes, out_shape, transform, dtype="uint8"):
    return features.rasterize(shapes, out_shape=tuple(out_shape), fill=0,
                              transform=Affine.from_gdal(*transform), dtype=dtype)


def to_map(rings_px, gt):
    """Pixel-space rings -> map-space rings (lists of [x, y]) under ``gt``."""
    x0, dx, _, y0, _, dy = gt
    return [[[x0 + float(c) * dx, y0 + float(r) * dy] for c, r in ring] for ring in rings_px]


def poly(gt, *rings_px):
    return {"type": "Polygon", "coordinates": to_map(rings_px, gt)}


def multi(gt, *polys_px):
    return {"type": "MultiPolygon", "coordinates": [to_map(p, gt) for p in polys_px]}


def rect(c0, r0, c1, r1, ccw=False):
    ring = [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]
    return ring[::-1] if ccw else ring


def hand_cases():
    """Boundary cases, written in pixel coordinates (col, row)."""
    cases = []

    def add(name, shapes, out_shape=(12, 12), gt=(0.0, 1.0, 0.0, 12.0, 0.0, -1.0)):
        cases.append({"name": name, "out_shape": list(out_shape), "transform": list(gt),
                      "dtype": "uint8", "shapes": [[g(gt), v] for g, v in shapes]})

    P = lambda *rings: (lambda gt: poly(gt, *rings))           # noqa: E731
    M = lambda *polys: (lambda gt: multi(gt, *polys))          # noqa: E731
    for gt_name, gt in [("unit", (0.0, 1.0, 0.0, 12.0, 0.0, -1.0)),
                        ("s2", (600000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0)),
                        ("offset", (499980.3, 10.0, 0.0, 4200000.7, 0.0, -10.0)),
                        ("odd", (0.1, 0.3, 0.0, 7.7, 0.0, -0.3)),
                        ("southup", (-3.25, 0.5, 0.0, -1.75, 0.0, 0.5))]:
        def add_gt(name, shapes, out_shape=(12, 12)):
            add(f"{name}_{gt_name}", shapes, out_shape, gt)
        add_gt("square_on_pixel_edges", [(P(rect(3, 4, 5, 6)), 1)])
        add_gt("square_on_pixel_centres", [(P(rect(2.5, 3.5, 6.5, 7.5)), 1)])
        add_gt("square_on_centres_ccw", [(P(rect(2.5, 3.5, 6.5, 7.5, ccw=True)), 1)])
        add_gt("square_with_hole", [(P(rect(1, 1, 9, 9), rect(3, 3, 6, 6)), 1)])
        add_gt("hole_on_centres", [(P(rect(0.5, 0.5, 9.5, 9.5), rect(3.5, 3.5, 6.5, 6.5)), 1)])
        add_gt("hole_same_orientation", [(P(rect(0.5, 0.5, 9.5, 9.5), rect(3.5, 3.5, 6.5, 6.5, ccw=True)), 1)])
        add_gt("hole_filled_by_next", [(P(rect(1, 1, 9, 9), rect(3.5, 3.5, 6.5, 6.5)), 1),
                                       (P(rect(3.5, 3.5, 6.5, 6.5)), 2)])
        add_gt("triangle_centres", [(P([(1.5, 1.5), (9.5, 1.5), (1.5, 9.5), (1.5, 1.5)]), 1)])
        add_gt("triangle_edges", [(P([(1, 1), (9, 1), (1, 9), (1, 1)]), 1)])
        add_gt("diamond_centres", [(P([(5.5, 0.5), (10.5, 5.5), (5.5, 10.5), (0.5, 5.5), (5.5, 0.5)]), 1)])
        add_gt("vertical_edges_on_centres", [(P(rect(2.5, 1, 7.5, 9)), 1), (P(rect(9.5, 1, 9.5001, 9)), 2)])
        add_gt("horizontal_edges_on_centres", [(P(rect(1, 2.5, 9, 7.5)), 1), (P(rect(1, 9.5, 9, 9.5001)), 2)])
        add_gt("sliver_horizontal", [(P(rect(1, 4.4, 11, 4.6)), 1), (P(rect(1, 6.6, 11, 6.9)), 2)])
        add_gt("sliver_vertical", [(P(rect(4.4, 1, 4.6, 11)), 1), (P(rect(6.6, 1, 6.9, 11)), 2)])
        add_gt("sliver_diagonal", [(P([(0, 0.2), (11.8, 12), (12, 11.8), (0.2, 0), (0, 0.2)]), 1)])
        add_gt("zero_area_spike", [(P([(1.5, 1.5), (9.5, 1.5), (9.5, 5.5), (11.5, 5.5), (9.5, 5.5),
                                       (9.5, 9.5), (1.5, 9.5), (1.5, 1.5)]), 1)])
        add_gt("touching_rings", [(P(rect(1, 1, 10, 10), [(5.5, 1), (8, 5.5), (5.5, 8), (3, 5.5), (5.5, 1)]), 1)])
        add_gt("shared_edge_two_values", [(P(rect(1, 1, 5.5, 9)), 1), (P(rect(5.5, 1, 10, 9)), 2)])
        add_gt("shared_edge_reverse_order", [(P(rect(5.5, 1, 10, 9)), 2), (P(rect(1, 1, 5.5, 9)), 1)])
        add_gt("shared_ring_two_polygons", [(P(rect(2.5, 2.5, 8.5, 8.5)), 1), (P(rect(2.5, 2.5, 8.5, 8.5, True)), 2)])
        add_gt("overlap_later_wins", [(P(rect(1, 1, 7, 7)), 1), (P(rect(4, 4, 10, 10)), 2),
                                      (P(rect(2.5, 5.5, 8.5, 6.5)), 3)])
        add_gt("multipolygon_disjoint", [(M([rect(1, 1, 3, 3)], [rect(5.5, 5.5, 9.5, 9.5)]), 1)])
        add_gt("multipolygon_overlapping_parts", [(M([rect(1, 1, 7, 7)], [rect(4, 4, 10, 10)]), 1)])
        add_gt("multipolygon_touching_parts", [(M([rect(1, 1, 5.5, 5.5)], [rect(5.5, 5.5, 10, 10)]), 1)])
        add_gt("self_intersecting_bowtie", [(P([(1, 1), (10, 10), (10, 1), (1, 10), (1, 1)]), 1)])
        add_gt("partly_outside", [(P(rect(-5, -3, 4.5, 4.5)), 1), (P(rect(8.5, 7.5, 30, 40)), 2)])
        add_gt("wholly_outside", [(P(rect(-9, -9, -2, -2)), 1), (P(rect(13, 2, 20, 5)), 2),
                                  (P(rect(2, 12.5, 5, 20)), 3)])
        add_gt("covering_grid", [(P(rect(-100, -100, 100, 100)), 1)])
        add_gt("unclosed_ring", [(P([(1.5, 1.5), (9.5, 2.5), (9.5, 5.5), (5.5, 9.5)]), 1)])
        add_gt("edge_row_col_zero", [(P(rect(0, 0, 12, 0.5)), 1), (P(rect(0, 11.5, 12, 12)), 2),
                                     (P(rect(0, 0, 0.5, 12)), 3)])
    return cases


def random_cases(rng, count=200):
    """Small random polygons snapped to half/quarter pixels: many exact ties."""
    cases = []
    gts = [(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), (600000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0),
           (100.25, 0.3, 0.0, 500.75, 0.0, -0.3), (1234.5, 0.5, 0.0, 99.9, 0.0, -0.5),
           (499980.3, 10.0, 0.0, 4200000.7, 0.0, -10.0), (0.0, 2.0, 0.0, 0.0, 0.0, 2.0)]
    for i in range(count):
        h, w = (int(v) for v in rng.integers(5, 40, 2))
        gt = gts[i % len(gts)]
        shapes = []
        for k in range(int(rng.integers(1, 5))):
            n = int(rng.integers(3, 12))
            step = [1.0, 2.0, 4.0][int(rng.integers(0, 3))]
            c = rng.integers(-3 * step, (max(h, w) + 3) * step, (n, 2)) / step
            c = np.vstack([c, c[:1]])
            rings = [[(float(a), float(b)) for a, b in c]]
            if rng.random() < 0.2:  # a small hole around the centroid
                m = c.mean(axis=0)
                rings.append([(float(a), float(b)) for a, b in (m + (c - m) * 0.3)])
            shapes.append([poly(gt, *rings), k + 1])
        cases.append({"name": f"random_{i:03d}", "out_shape": [h, w], "transform": list(gt),
                      "dtype": "uint8", "shapes": shapes})
    return cases


def parcels(rng, n=10_000):
    """Parcel-like star polygons (1-30 px across, 4-16 vertices, some holes),
    vertices on a quarter-pixel lattice, scattered over (and off) the grid.

    Returns ``lengths`` (n, 2) uint8 ring lengths (0 = no such ring),
    ``first`` (rings, 2) int16 first vertex of each ring and ``delta``
    (vertices, 2) int8 steps between vertices (0 at ring starts), all in
    quarter pixels."""
    lengths, rings_q = np.zeros((n, 2), np.uint8), []
    for i in range(n):
        k = int(rng.integers(4, 17))
        centre = rng.uniform(-20, PARCEL_SIZE + 20, 2)
        radius = rng.uniform(0.5, 15)
        angle = np.sort(rng.uniform(0, 2 * np.pi, k))
        ring = np.stack([np.cos(angle), np.sin(angle)], 1) * (radius * rng.uniform(0.6, 1.0, k))[:, None]
        rings = [ring] + ([ring[::-1] * 0.3] if radius > 4 and rng.random() < 0.1 else [])
        for j, ring in enumerate(rings):
            q = np.round((centre + ring) * 4).astype(np.int64)
            rings_q.append(np.vstack([q, q[:1]]))
            lengths[i, j] = len(q) + 1
    first = np.array([q[0] for q in rings_q], np.int16)
    delta = np.concatenate([np.diff(q, axis=0, prepend=q[:1]) for q in rings_q])
    assert np.abs(delta).max() < 128
    return lengths, first, delta.astype(np.int8)


def star_q(rng, centre, radius, vertices):
    """Closed ring (lattice units, 1/LATTICE pixel) of an irregular star-shaped
    polygon, clockwise or not: sorted random angles, radii ``radius`` times a
    random factor in [0.5, 1] (pixels)."""
    angle = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    r = radius * rng.uniform(0.5, 1.0, vertices)
    ring = np.round((centre + r[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)) * LATTICE)
    ring = ring.astype(np.int64)[::rng.choice([-1, 1])]
    return np.vstack([ring, ring[:1]])


def irregular_q(rng, n, size):
    """Shapes as lists of parts, each a list of rings (lattice units): stars
    2 - size/2 pixels across (log-uniform), 20-200 vertices, 20 % with a
    hole, 15 % MultiPolygons of 2-4 parts; centres up to 10 % off the grid."""
    shapes = []
    for _ in range(n):
        centre = rng.uniform(-0.1, 1.1, 2) * size
        radius = np.exp(rng.uniform(0, np.log(size / 4)))
        vertices = int(rng.integers(20, 201))
        if rng.random() < 0.15:
            shapes.append([[star_q(rng, centre + rng.uniform(-radius, radius, 2), radius / 2,
                                   max(vertices // 2, 10))] for _ in range(int(rng.integers(2, 5)))])
        else:
            rings = [star_q(rng, centre, radius, vertices)]
            if rng.random() < 0.2:
                rings.append(star_q(rng, centre, radius * 0.3, max(vertices // 4, 5)))
            shapes.append([rings])
    return shapes


def boxes_q(rng, n, size):
    """Boxes and right triangles 1-12 pixels across, vertices on pixel
    centres (k + 0.5) or pixel edges (k), some off the grid (lattice units)."""
    shapes = []
    for _ in range(n):
        c0, r0 = rng.integers(-4, size + 4, 2)
        c1, r1 = (c0, r0) + rng.integers(1, 13, 2)
        c0, c1, r0, r1 = (LATTICE * v + LATTICE // 2 * int(rng.integers(0, 2)) for v in (c0, c1, r0, r1))
        corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]
        if rng.random() < 0.5:
            del corners[int(rng.integers(0, 4))]
        if rng.random() < 0.5:
            corners.reverse()
        shapes.append([[np.array(corners + corners[:1])]])
    return shapes


def pack_shapes(shapes_q):
    """Shapes (lists of parts, lists of rings, (k, 2) lattice arrays) ->
    ``q`` (vertices, 2) int32, ``ring_length`` per ring, ``part_rings`` per
    part, ``shape_parts`` per shape (a shape of 1 part is a Polygon, else a
    MultiPolygon)."""
    parts = [part for shape in shapes_q for part in shape]
    rings = [ring for part in parts for ring in part]
    return {"q": np.concatenate(rings).astype(np.int32),
            "ring_length": np.array([len(r) for r in rings], np.int32),
            "part_rings": np.array([len(p) for p in parts], np.int32),
            "shape_parts": np.array([len(s) for s in shapes_q], np.int32)}


def overlap_cases():
    """The arrays of rasterize_overlap_fixture.npz (see the module docstring)."""
    rng = np.random.default_rng(20261126)
    size = (OVERLAP_SIZE, OVERLAP_SIZE)
    arrays = {}
    for name, shapes_q, gt in [
            ("irregular_s2", irregular_q(rng, 120, OVERLAP_SIZE), (600000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0)),
            ("irregular_odd", irregular_q(rng, 120, OVERLAP_SIZE), (0.1, 0.3, 0.0, 7.7, 0.0, -0.3)),
            ("boxes_unit", boxes_q(rng, 300, OVERLAP_SIZE), (0.0, 1.0, 0.0, 64.0, 0.0, -1.0)),
            ("boxes_southup", boxes_q(rng, 300, OVERLAP_SIZE), (-3.25, 0.5, 0.0, -1.75, 0.0, 0.5))]:
        packed = pack_shapes(shapes_q)
        shapes = unpack_shapes(**packed, transform=gt)
        arrays.update({f"{name}_{key}": value for key, value in packed.items()})
        arrays[f"{name}_transform"] = np.array(gt)
        arrays[f"{name}_expected"] = gdal_rasterize(shapes, size, gt, "uint16")
    return arrays


def main():
    arrays = overlap_cases()
    np.savez_compressed(OVERLAP_OUT, **arrays)
    print(f"{len(arrays) // 6} cases -> {OVERLAP_OUT} ({OVERLAP_OUT.stat().st_size / 1e3:.0f} kB)")
    rng = np.random.default_rng(20240611)
    cases = hand_cases() + random_cases(rng)
    arrays = {}
    for case in cases:
        arrays["expected_" + case["name"]] = gdal_rasterize(
            case["shapes"], case["out_shape"], case["transform"], case["dtype"])
    lengths, first, delta = parcels(rng)
    shapes = parcel_shapes(lengths, first, delta, PARCEL_TRANSFORM)
    arrays.update(parcels_lengths=lengths, parcels_first=first, parcels_delta=delta,
                  parcels_transform=np.array(PARCEL_TRANSFORM))
    arrays["parcels_expected"] = gdal_rasterize(shapes, (PARCEL_SIZE, PARCEL_SIZE), PARCEL_TRANSFORM)
    text = json.dumps(cases, separators=(",", ":"))
    arrays["cases_json"] = np.frombuffer(text.encode(), dtype=np.uint8)
    np.savez_compressed(OUT, **arrays)
    print(f"{len(cases)} cases + {len(lengths)} parcels -> {OUT} ({OUT.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
