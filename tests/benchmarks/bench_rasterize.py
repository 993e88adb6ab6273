"""Dev-only benchmark: sits_ref.rasterize vs GDAL (rasterio.features.rasterize).

10,000 parcel-like polygons (~100 vertices, 10-300 m across) scattered over a
10980 x 10980 grid of 10 m pixels in EPSG:32631-like coordinates (a Sentinel-2
tile).  Times both rasterizers (best of 3, same process, geometries already in
memory as GeoJSON-like dicts), checks the outputs are identical and prints the
ratio ours / GDAL.  Without rasterio only our time is printed.

    python tests/benchmarks/bench_rasterize.py
"""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sits_ref.rasterize import rasterize  # noqa: E402

try:
    from affine import Affine
    from rasterio import features
except ImportError:  # rasterio is a dev-only tool
    features = None

SIZE = 10980
TRANSFORM = (600000.0, 10.0, 0.0, 5000040.0, 0.0, -10.0)  # x0, dx, 0, y0, 0, dy


def parcels(n=10_000, vertices=100, seed=0):
    """Star-shaped, slightly irregular polygons 10-300 m across, values 1..255."""
    rng = np.random.default_rng(seed)
    x0, dx, _, y0, _, dy = TRANSFORM
    cx = rng.uniform(x0, x0 + SIZE * dx, n)
    cy = rng.uniform(y0 + SIZE * dy, y0, n)
    radius = rng.uniform(5.0, 150.0, n)
    angle = np.sort(rng.uniform(0, 2 * np.pi, (n, vertices)), axis=1)
    wobble = 1 + 0.15 * rng.standard_normal((n, vertices)).clip(-2, 2)
    xs = cx[:, None] + radius[:, None] * wobble * np.cos(angle)
    ys = cy[:, None] + radius[:, None] * wobble * np.sin(angle)
    shapes = []
    for i in range(n):
        ring = list(zip(xs[i].tolist(), ys[i].tolist()))
        ring.append(ring[0])
        shapes.append(({"type": "Polygon", "coordinates": [ring]}, int(i % 255 + 1)))
    return shapes


def best_of(fn, repeat=3):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), result


def main():
    shapes = parcels()
    ours_t, ours = best_of(lambda: rasterize(shapes, (SIZE, SIZE), TRANSFORM))
    print(f"ours : {ours_t:.3f} s  ({np.count_nonzero(ours)} pixels burnt)")
    if features is None:
        print("rasterio not installed: GDAL not timed")
        return
    gdal_t, gdal = best_of(lambda: features.rasterize(
        shapes, out_shape=(SIZE, SIZE), transform=Affine.from_gdal(*TRANSFORM),
        fill=0, dtype=np.uint8))
    print(f"GDAL : {gdal_t:.3f} s")
    print(f"ratio ours/GDAL: {ours_t / gdal_t:.2f}")
    same = np.array_equal(ours, gdal)
    print("identical:", same, "" if same else f"({np.count_nonzero(ours != gdal)} pixels differ)")


if __name__ == "__main__":
    main()
