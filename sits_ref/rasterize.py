"""Burn polygons into a raster grid, pixel for pixel identical to GDAL.

``rasterize(shapes, out_shape, transform)`` has the call shape and meaning of
``rasterio.features.rasterize`` with ``all_touched=False``: the pixel-centre
rule, same as GDAL (``GDALRasterizeGeometries`` / ``gdal_rasterize``).  A pixel
is burnt iff its centre is inside the polygon as decided by GDAL's scanline
algorithm (``GDALdllImageFilledPolygon`` in ``alg/llrasterize.cpp``), including
its tie-breaking on boundaries, which we reproduce exactly:

* map coordinates go to pixel space as GDAL does, via the inverse geotransform
  ``col = -x0/dx + X * (1/dx)``, ``row = -y0/dy + Y * (1/dy)``;
* scanline ``r`` samples the line ``y = r + 0.5``; a non-horizontal edge with
  end points ``ylo < yhi`` crosses it iff ``ylo <= r + 0.5 < yhi`` (half-open),
  at ``x = (r + 0.5 - ylo) * (xhi - xlo) / (yhi - ylo) + xlo``, which is
  rounded to the pixel boundary ``floor(x + 0.5)``;
* all rings of a polygon (exterior and holes) are filled together with the
  even-odd rule: the sorted crossings of a scanline are paired and the
  columns ``[c0, c1)`` between them are burnt (the parts of a MultiPolygon
  are burnt one after the other, as rasterio does);
* a horizontal edge lying exactly on a scanline ``r + 0.5`` is burnt on its own
  (columns ``[floor(x_min + 0.5), floor(x_max + 0.5))``), but only if walked
  towards decreasing column once the ring is made clockwise in map
  coordinates (as GDAL does, with OGR's ``isClockwise`` test) -- a GDAL quirk;
* shapes are burnt in order: where they overlap, the later one wins;
* values are cast as GDAL does (rounded half away from zero, clamped).

Everything is vectorised over all shapes at once (no Python loop per shape,
edge or span): the crossings of every edge with the scanlines it spans are
computed in one go, sorted by (shape, row, column) through one integer key,
paired into spans, and the spans expanded to flat pixel indices.  Only numpy
is needed.  Unlike rasterio, malformed geometries raise ValueError instead of
being skipped with a warning.
"""
from itertools import chain

import numpy as np

__all__ = ["rasterize"]


def _polygons(geometry):
    """The polygons of a GeoJSON-like geometry, each a list of closed rings.

    A MultiPolygon yields its polygons separately, as rasterio burns them
    (so overlapping parts stay burnt rather than cancelling out).  Like OGR,
    an unclosed ring gets its first vertex appended.
    """
    geometry = getattr(geometry, "__geo_interface__", geometry)   # e.g. shapely
    gtype = geometry.get("type") if isinstance(geometry, dict) else None
    coords = geometry.get("coordinates") if gtype else None
    if gtype == "Polygon":
        polygons = [coords]
    elif gtype == "MultiPolygon":
        polygons = coords
    else:
        raise ValueError(f"cannot rasterize geometry of type {gtype!r}: "
                         "only 'Polygon' and 'MultiPolygon' are supported")
    if not polygons or any(not p or any(len(r) < 4 for r in p) for p in polygons):
        raise ValueError(f"malformed {gtype}: needs >= 1 ring, rings >= 4 points")
    return [[r if tuple(r[0]) == tuple(r[-1]) else list(r) + [r[0]] for r in p]
            for p in polygons]


def _is_clockwise(x, y, start, n):
    """OGR's ``OGRLinearRing::isClockwise`` for closed rings, vectorised.

    The pivot is the first lowest-then-rightmost vertex (closing vertex
    excluded); the sign of the cross product of its two neighbours decides.
    Degenerate pivots (duplicated, or a neighbour within 1e-5 map units, or a
    zero cross product) fall back to OGR's shoelace sum in OGR's order.
    """
    ring = np.repeat(np.arange(len(n)), n)
    local = np.arange(len(x)) - start[ring]
    body = local < n[ring] - 1                    # closing vertex excluded
    low = body & (y == np.minimum.reduceat(y, start)[ring])
    right = np.maximum.reduceat(np.where(low, x, -np.inf), start)
    pivots = np.flatnonzero(low & (x == right[ring]))
    first = np.ones(len(pivots), dtype=bool)
    first[1:] = ring[pivots[1:]] != ring[pivots[:-1]]
    v = pivots[first]                             # one pivot per ring, in order
    fallback = np.bincount(ring[pivots], minlength=len(n)) > 1
    lv = local[v]
    prev = start + np.where(lv == 0, n - 2, lv - 1)
    nxt = start + np.where(lv + 1 >= n - 1, 0, lv + 1)
    for k in (prev, nxt):
        fallback |= (np.abs(x[k] - x[v]) < 1e-5) & (np.abs(y[k] - y[v]) < 1e-5)
    dx0, dy0, dx1, dy1 = x[prev] - x[v], y[prev] - y[v], x[nxt] - x[v], y[nxt] - y[v]
    cross = dx1 * dy0 - dx0 * dy1
    clockwise = cross < 0
    for r in np.flatnonzero(fallback | (cross == 0)):   # rare: exact OGR sum
        xs, ys = (a[start[r]:start[r] + n[r]].tolist() for a in (x, y))
        total = xs[0] * (ys[1] - ys[-1])
        for i in range(1, len(xs) - 1):
            total += xs[i] * (ys[i + 1] - ys[i - 1])
        total += xs[-1] * (ys[0] - ys[-2])
        clockwise[r] = total < 0
    return clockwise


def _edges(rings, transform):
    """Edges (x1, y1, x2, y2) in pixel space of all rings, and ring lengths.

    Like GDAL (``GDALCollectRingsFromGeometry``), every ring is first made
    clockwise in map coordinates, then walked from its last vertex to its
    first and from vertex i-1 to i.  The orientation matters only for
    horizontal edges lying exactly on a scanline (see ``rasterize``).
    """
    x0, dx, rx, y0, ry, dy = (float(v) for v in transform)
    if rx != 0 or ry != 0 or dx == 0 or dy == 0:
        raise ValueError(f"transform must be north-up and invertible: {transform}")
    n = np.array([len(ring) for ring in rings])
    start = np.cumsum(n) - n
    xy = np.fromiter(chain.from_iterable(chain.from_iterable(rings)), np.float64)
    if len(xy) == 2 * n.sum():                    # fast path: all points 2-D
        xy = xy.reshape(-1, 2)
    else:                                         # e.g. (x, y, z): drop z
        xy = np.concatenate([np.asarray(r, dtype=np.float64)[:, :2] for r in rings])
    ring = np.repeat(np.arange(len(n)), n)
    index = np.arange(len(xy))
    flip = ~_is_clockwise(xy[:, 0], xy[:, 1], start, n)[ring]
    index[flip] = (2 * start + n - 1)[ring][flip] - index[flip]
    xy = xy[index]
    # GDALInvGeoTransform's no-rotation case, then GDAL's affine evaluation.
    px = -x0 / dx + xy[:, 0] * (1.0 / dx)
    py = -y0 / dy + xy[:, 1] * (1.0 / dy)
    prev = np.arange(len(xy)) - 1
    prev[start] = start + n - 1                   # ring: last vertex -> first
    return px[prev], py[prev], px, py, n


def rasterize(shapes, out_shape, transform, fill=0, dtype=np.uint8):
    """Burn ``(geometry, value)`` pairs into a new ``out_shape`` array.

    shapes:    iterable of (geometry, value): geometry a GeoJSON-like dict,
               ``{"type": "Polygon" | "MultiPolygon", "coordinates": ...}``
               in map units; value a number (None means ``fill``).
    out_shape: (rows, cols) of the output grid.
    transform: GDAL geotransform ``(x0, dx, 0, y0, 0, dy)`` in map units
               (dy < 0 for north-up); rotated transforms are rejected.
    Returns an ``out_shape`` array of ``dtype``, ``fill`` where nothing burnt.
    Pixel-centre rule, same as GDAL; later shapes overwrite earlier ones;
    shapes partly or wholly outside the grid are clipped, never an error.
    Raises ValueError for other geometry types or malformed polygons.
    """
    height, width = (int(n) for n in out_shape)
    # np.zeros is lazily zeroed by the OS: untouched pages cost nothing.
    out = np.zeros((height, width), dtype) if fill == 0 else np.full((height, width), fill, dtype)
    ring_lists, values = [], []
    for geometry, value in shapes:
        for rings in _polygons(geometry):
            ring_lists.append(rings)
            values.append(fill if value is None else value)
    if not ring_lists or height == 0 or width == 0:
        return out
    ring_shape = np.repeat(np.arange(len(ring_lists)), [len(r) for r in ring_lists])
    x1, y1, x2, y2, lengths = _edges([r for rs in ring_lists for r in rs], transform)
    shape_of = np.repeat(ring_shape, lengths)     # shape index of every edge
    group, c0, c1 = _spans(x1, y1, x2, y2, shape_of * height, height, width)
    _burn(out, group, c0, c1, _cast(values, out.dtype))
    return out


def _spans(x1, y1, x2, y2, base, height, width):
    """Spans to burn: (group = shape * height + row, c0, c1), columns [c0, c1).

    ``base`` is ``shape * height`` for every edge (x1, y1) -> (x2, y2), in
    pixel space.  Columns are clipped to [0, width], rows to [0, height).
    """
    # Each edge crosses the scanlines r with ylo <= r + .5 < yhi (half-open,
    # so horizontal edges cross none), at x computed as GDAL does.
    ylo, yhi = np.minimum(y1, y2), np.maximum(y1, y2)
    r0 = _first_row_at_or_above(ylo, height)
    count = _first_row_at_or_above(yhi, height) - r0
    e = np.flatnonzero(count)
    up = y1[e] < y2[e]
    xlo, xhi = np.where(up, x1[e], x2[e]), np.where(up, x2[e], x1[e])
    ylo, yhi, r0, count = ylo[e], yhi[e], r0[e], count[e]
    edge = np.repeat(np.arange(len(e)), count)
    row = np.arange(len(edge)) - np.repeat(np.cumsum(count) - count - r0, count)
    xl, yl = xlo[edge], ylo[edge]
    cross = (row + 0.5 - yl) * (xhi[edge] - xl) / (yhi[edge] - yl) + xl
    col = np.clip(np.floor(cross + 0.5), 0, width).astype(np.int64)
    # Sort crossings by (shape, row, column) in one int64 key, pair them up
    # (even-odd rule; every closed ring crosses a scanline an even number of times).
    key = np.sort((base[e][edge] + row) * (width + 1) + col)
    col = key % (width + 1)

    # Horizontal edges exactly on a scanline, walked towards decreasing x.
    hr = np.floor(y1)
    h = np.flatnonzero((y1 == y2) & (x1 > x2) & (hr + 0.5 == y1) & (hr >= 0) & (hr < height))
    h_c0 = np.clip(np.floor(x2[h] + 0.5), 0, width).astype(np.int64)
    h_c1 = np.clip(np.floor(x1[h] + 0.5), 0, width).astype(np.int64)
    return (np.concatenate([key[0::2] // (width + 1), base[h] + hr[h].astype(np.int64)]),
            np.concatenate([col[0::2], h_c0]), np.concatenate([col[1::2], h_c1]))


def _cast(values, dtype):
    """Burn values as GDAL writes them: rounded half away from zero and
    clamped to the range of an integer ``dtype``."""
    values = np.asarray(values, dtype=np.float64)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.trunc(values + np.copysign(0.5, values)), info.min, info.max)
    return values.astype(dtype)


def _first_row_at_or_above(y, height):
    """Smallest integer r with r + 0.5 >= y, clipped to [0, height].

    Exact: y - 0.5 is computed without rounding for 0.25 <= y < 2**52, and
    where it may round (y < 0.25) the result clips to 0 anyway."""
    return np.clip(np.ceil(np.clip(y, -1.0, height + 1.0) - 0.5), 0, height).astype(np.int64)


def _burn(out, group, c0, c1, values):
    """Burn spans: columns [c0, c1) of row ``group % H`` get ``values[group // H]``.

    Later shapes win, exactly and deterministically (numpy leaves the order of
    repeated fancy-index assignments unspecified, so no pixel is written
    twice with different values): spans are sorted along the image and merged
    into clusters of overlapping spans.  A cluster of a single shape is one
    interval with one value; the rare clusters mixing shapes are resolved per
    pixel by sorting (pixel, shape) keys and keeping the last shape.
    """
    height, width = out.shape
    keep = c1 > c0
    shape, row = group[keep] // height, group[keep] % height
    start = row * width + c0[keep]                # flat pixel index, [start, end)
    end = row * width + c1[keep]
    order = np.argsort(start)
    start, end, shape = start[order], end[order], shape[order]
    reach = np.maximum.accumulate(end)            # spans never cross rows
    head = np.ones(len(start), dtype=bool)
    head[1:] = start[1:] >= reach[:-1]
    heads = np.flatnonzero(head)
    if len(heads) == 0:
        return
    lo, hi = np.minimum.reduceat(shape, heads), np.maximum.reduceat(shape, heads)
    single = lo == hi
    tail = np.append(heads[1:], len(start)) - 1
    _fill(out, start[heads][single], reach[tail][single], values[lo[single]])
    mixed = ~single[np.cumsum(head) - 1]
    if mixed.any():
        pixel = _expand(start[mixed], end[mixed])
        n_shapes = int(shape.max()) + 1
        # (pixel, shape) in one int64 key: fine up to H * W * n_shapes < 2**63.
        key = np.sort(pixel * n_shapes + np.repeat(shape[mixed], end[mixed] - start[mixed]))
        last = np.append(key[1:] // n_shapes != key[:-1] // n_shapes, True)
        out.reshape(-1)[key[last] // n_shapes] = values[key[last] % n_shapes]


def _expand(start, end):
    """Concatenation of ``arange(s, e)`` for all spans, without a Python loop."""
    length = end - start
    return np.arange(int(length.sum())) + np.repeat(start - (np.cumsum(length) - length), length)


def _fill(out, start, end, value):
    """Write ``value[i]`` to flat pixels [start[i], end[i]) (disjoint spans)."""
    out.reshape(-1)[_expand(start, end)] = np.repeat(value, end - start)
