"""Dev-only benchmark: sits_ref.rasterize vs GDAL (rasterio.features.rasterize).

Three cases, each burnt by both rasterizers in the same process into a uint16
grid (fill 0, geometries already in memory as GeoJSON-like dicts, best of 3
calls each), then compared pixel for pixel:

* ``tile``:  10,000 irregular polygons, 100 m - 2 km across, 20-200 vertices,
  some with a hole, some MultiPolygons of several parts, on a 10980 x 10980
  grid of 10 m pixels in EPSG:32631-like coordinates (a Sentinel-2 tile);
* ``dense``: the same kind of 10,000 polygons on a 2048 x 2048 grid, so that
  they overlap several deep (later shapes win);
* ``small``: 400 small boxes and triangles on a 256 x 256 grid, vertices
  exactly on pixel centres and pixel edges (GDAL's tie-breaking rules).

Values are distinct per shape (1, 2, ...), so an overlap resolved the wrong
way shows as differing pixels.  Prints one table row per case: our time,
GDAL's, the ratio, whether the outputs are identical, the output array's
size and our peak memory above it (tracemalloc, over a separate call).
Without rasterio (a dev-only tool, never a runtime dependency) only our
columns are filled.

    python tests/benchmarks/bench_rasterize.py            # all three cases
    python tests/benchmarks/bench_rasterize.py dense      # one case
"""
import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sits_ref.rasterize import rasterize  # noqa: E402

try:
    from affine import Affine
    from rasterio import features
except ImportError:  # rasterio is a dev-only tool
    features = None

S2_TRANSFORM = (600000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0)  # x0, dx, 0, y0, 0, dy
SMALL_TRANSFORM = (0.0, 1.0, 0.0, 256.0, 0.0, -1.0)


def star(rng, centre, radius, vertices):
    """Closed ring of an irregular star-shaped polygon around ``centre``
    (map units), clockwise or not at random: ``vertices`` points at sorted
    random angles, radii ``radius`` times a random factor in [0.5, 1]."""
    angle = np.sort(rng.uniform(0, 2 * np.pi, vertices))
    r = radius * rng.uniform(0.5, 1.0, vertices)
    ring = np.stack([centre[0] + r * np.cos(angle), centre[1] + r * np.sin(angle)], 1)
    if rng.random() < 0.5:
        ring = ring[::-1]
    return [tuple(p) for p in ring.tolist()] + [tuple(ring[0].tolist())]


def irregular_polygons(size, n=10_000, seed=0):
    """``n`` (geometry, value) pairs over a ``size`` x ``size`` grid of 10 m
    pixels (some partly outside it): 100 m - 2 km across (log-uniform),
    20-200 vertices, 15 % with a hole, 10 % MultiPolygons of 2-4 parts."""
    rng = np.random.default_rng(seed)
    x0, dx, _, y0, _, dy = S2_TRANSFORM
    shapes = []
    for i in range(n):
        centre = (x0 + rng.uniform(-0.02, 1.02) * size * dx,
                  y0 + rng.uniform(-0.02, 1.02) * size * dy)
        radius = np.exp(rng.uniform(np.log(50.0), np.log(1000.0)))
        vertices = int(rng.integers(20, 201))
        if rng.random() < 0.1:
            parts = []
            for _ in range(int(rng.integers(2, 5))):
                offset = rng.uniform(-radius, radius, 2)
                parts.append([star(rng, (centre[0] + offset[0], centre[1] + offset[1]),
                                   radius / 2, max(vertices // 2, 10))])
            geometry = {"type": "MultiPolygon", "coordinates": parts}
        else:
            rings = [star(rng, centre, radius, vertices)]
            if rng.random() < 0.15:
                rings.append(star(rng, centre, radius * 0.3, max(vertices // 4, 5)))
            geometry = {"type": "Polygon", "coordinates": rings}
        shapes.append((geometry, i + 1))
    return shapes


def small_polygons(size=256, n=400, seed=0):
    """``n`` boxes and right triangles 1-24 px across on a ``size`` grid of
    1 m pixels, vertices on pixel centres (k + 0.5) or pixel edges (k)."""
    rng = np.random.default_rng(seed)
    x0, dx, _, y0, _, dy = SMALL_TRANSFORM
    shapes = []
    for i in range(n):
        c0, r0 = rng.integers(-4, size + 4, 2)
        c1, r1 = (c0, r0) + rng.integers(1, 25, 2)
        c0, c1, r0, r1 = (v + 0.5 * int(rng.integers(0, 2)) for v in (c0, c1, r0, r1))
        corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]
        if rng.random() < 0.5:      # a right triangle: drop one corner
            del corners[int(rng.integers(0, 4))]
        if rng.random() < 0.5:
            corners.reverse()
        ring = [(x0 + float(c) * dx, y0 + float(r) * dy) for c, r in corners + corners[:1]]
        shapes.append(({"type": "Polygon", "coordinates": [ring]}, i + 1))
    return shapes


CASES = {
    "tile": lambda: (irregular_polygons(10980), (10980, 10980), S2_TRANSFORM),
    "dense": lambda: (irregular_polygons(2048), (2048, 2048), S2_TRANSFORM),
    "small": lambda: (small_polygons(), (256, 256), SMALL_TRANSFORM),
}


def best_of(fn, repeat=3):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def peak_memory(fn):
    """Peak memory (bytes) that ``fn`` allocates through Python's and numpy's
    allocators, as traced by tracemalloc."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(name):
    shapes, out_shape, transform = CASES[name]()
    ours_fn = lambda: rasterize(shapes, out_shape, transform, dtype=np.uint16)  # noqa: E731
    ours_t, ours = best_of(ours_fn)
    peak = peak_memory(ours_fn)
    row = {"case": name, "ours": f"{ours_t:.4f}", "GDAL": "-", "ratio": "-", "identical": "-",
           "output MB": f"{ours.nbytes / 1e6:.0f}",
           "peak above output MB": f"{(peak - ours.nbytes) / 1e6:.1f}",
           "burnt": f"{np.count_nonzero(ours)}"}
    if features is not None:
        gdal_t, gdal = best_of(lambda: features.rasterize(
            shapes, out_shape=out_shape, transform=Affine.from_gdal(*transform),
            fill=0, dtype=np.uint16))
        differ = np.count_nonzero(ours != gdal)
        row.update(GDAL=f"{gdal_t:.4f}", ratio=f"{ours_t / gdal_t:.2f}",
                   identical="yes" if differ == 0 else f"NO ({differ} px differ)")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="case",
                        help=f"cases to run, of {', '.join(CASES)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    columns = ["case", "ours", "GDAL", "ratio", "identical", "output MB", "peak above output MB",
               "burnt"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for name in args.cases or CASES:
        row = run(name)
        print("| " + " | ".join(row[c] for c in columns) + " |", flush=True)
    if features is None:
        print("rasterio not installed: GDAL not timed")


if __name__ == "__main__":
    main()
