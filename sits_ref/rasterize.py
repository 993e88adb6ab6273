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

It is a scanline fill, vectorised over all shapes at once (no Python loop per
edge or span), band of rows by band: edges -> their crossings with the band's
scanlines -> spans ``[c0, c1)`` per (row, polygon) -> the band's pixels.  The
span ends cut the rows into pieces; each piece takes the value of the latest
polygon whose spans cover it, and the band is written as the run-length
decoding of its pieces (``np.repeat``).  Memory beyond the output is O(edges)
(about 50 bytes per edge) plus one band's worth of work (``BAND_PIXELS``
pixels, ``BAND_CROSSINGS`` crossings unless one row has more), never
O(crossings) nor O(burnt pixels).  Only numpy is needed.  Unlike rasterio,
malformed geometries raise ValueError instead of being skipped with a warning.
"""
from itertools import chain

import numpy as np

__all__ = ["rasterize"]

BAND_PIXELS = 1 << 22       # most pixels per band of rows (8 MB of uint16)
BAND_CROSSINGS = 1 << 17    # most crossings per band: temporaries stay in cache
EDGE_CHUNK = 1 << 15        # vertices read at once, likewise


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
    x0, dx, rx, y0, ry, dy = (float(v) for v in transform)
    if rx != 0 or ry != 0 or dx == 0 or dy == 0:
        raise ValueError(f"transform must be north-up and invertible: {transform}")
    # np.zeros is lazily zeroed by the OS: untouched pages cost nothing.
    out = np.zeros((height, width), dtype) if fill == 0 else np.full((height, width), fill, dtype)
    rings, polygon_rings, values = [], [], []
    for geometry, value in shapes:
        for polygon in _polygons(geometry):
            rings.extend(polygon)
            polygon_rings.append(len(polygon))
            values.append(fill if value is None else value)
    if not rings or height == 0 or width == 0:
        return out
    polygon_of_ring = np.repeat(np.arange(len(values)), polygon_rings)
    edges = _Edges(rings, polygon_of_ring, (x0, dx, y0, dy), height, width)
    # value[0] is what unburnt pixels hold, value[1 + p] polygon p's value.
    value = np.concatenate([np.full(1, fill, out.dtype), _cast(values, out.dtype)])
    for top, bottom, row, polygon, c0, c1 in edges.spans_by_band():
        if len(row):
            band = out[top:bottom].reshape(-1)
            first = (row - top) * width
            band[:] = _paint(first + c0, first + c1, polygon, len(band), value)
    return out


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
    if not polygons or not all(polygons) or min(len(r) for p in polygons for r in p) < 4:
        raise ValueError(f"malformed {gtype}: needs >= 1 ring, rings >= 4 points")
    if all(tuple(r[0]) == tuple(r[-1]) for p in polygons for r in p):
        return polygons
    return [[r if tuple(r[0]) == tuple(r[-1]) else list(r) + [r[0]] for r in p]
            for p in polygons]


def _vertices(rings):
    """Map coordinates (x, y) of all vertices of ``rings``, one row each, and
    ring lengths."""
    n = np.array([len(ring) for ring in rings])
    flat = chain.from_iterable(chain.from_iterable(rings))
    xy = np.fromiter(flat, np.float64, 2 * int(n.sum()))
    if next(flat, None) is None:                  # all points 2-D
        xy = xy.reshape(-1, 2)
    else:                                         # e.g. (x, y, z): drop z
        xy = np.concatenate([np.asarray(r, dtype=np.float64)[:, :2] for r in rings])
    return xy, n


class _Edges:
    """The polygon edges that cross scanlines of the grid, and their
    crossings, generated band of rows by band as int64 keys (high to low
    bits: row, group, column) and paired into spans.

    A group is a polygon (all its rings together: even-odd rule) or a
    horizontal edge on a scanline, which GDAL burns on its own: its two end
    columns enter the sort as a pair of their own.  Columns are clipped to
    [0, width], rows to [0, height).

    Kept per edge (about 50 bytes): its scanlines [r0, r1), its lower end
    (xlo, ylo), its extent (xspan, yspan) and its polygon's key bits, the
    edges ordered by the band of their first scanline, so that a band takes
    its new edges as a slice and carries over those reaching below it.
    """

    def __init__(self, rings, polygon_of_ring, transform, height, width):
        n_vertices = sum(map(len, rings))
        n_polygons = int(polygon_of_ring[-1]) + 1
        self.width = width
        self.col_bits = width.bit_length()
        self.group_bits = (n_polygons + n_vertices).bit_length()   # <= 1 group per edge
        self.row_shift = self.col_bits + self.group_bits
        if self.row_shift + height.bit_length() > 62:
            raise ValueError(f"{height} x {width} grid with {n_vertices} vertices: "
                             "too large for one int64 key per crossing")
        columns = _edges_by_chunk(rings, polygon_of_ring, transform, height)
        self._keep_horizontal(*map(_joined, columns[7:]), n_polygons)
        self._keep_crossing(*columns[:7], height)

    def _keep_crossing(self, xlo, ylo, xspan, yspan, r0, r1, polygon, height):
        """Keep the edges crossing scanlines (lists of parts), sorted by the
        band of r0 (a stable sort of small integers is a radix sort), joined
        one array at a time: little memory above the result."""
        r0, r1 = _joined(r0), _joined(r1)
        self.tops = _band_tops(r0, r1, height, max(1, BAND_PIXELS // self.width))
        band_rows = np.diff(self.tops)
        n_bands = len(band_rows)
        band = np.repeat(np.arange(n_bands, dtype=np.min_scalar_type(n_bands)), band_rows)[r0]
        order = np.argsort(band, kind="stable")
        self.first_edge = np.concatenate([[0], np.cumsum(np.bincount(band, minlength=n_bands))])
        self.r0, self.r1 = r0[order], r1[order]
        del band, r0, r1
        self.xlo, self.ylo, self.xspan, self.yspan = (_joined(c)[order] for c in (xlo, ylo, xspan, yspan))
        self.group_key = _joined(polygon)[order] << self.col_bits

    def _keep_horizontal(self, row, x1, x2, polygon, n_polygons):
        """Keep the pairs of keys of the horizontal edges burnt on their own,
        sorted; they get groups ``n_polygons``, ``n_polygons + 1``, ..."""
        group = n_polygons + np.arange(len(row))
        key = np.repeat((row << self.row_shift) + (group << self.col_bits), 2)
        key += _column(np.stack([x1, x2], 1).ravel(), self.width)
        key.sort()
        self.horizontal_key = key
        self.polygon_of_group = np.concatenate([np.arange(n_polygons), polygon])

    def spans_by_band(self):
        """Yield (top, bottom, row, polygon, c0, c1) for each band of rows
        [top, bottom), in order: the spans to burn there, columns [c0, c1),
        empty ones dropped."""
        carried = np.empty(0, np.int64)
        for b, (top, bottom) in enumerate(zip(self.tops[:-1], self.tops[1:])):
            active = np.concatenate([carried, np.arange(self.first_edge[b], self.first_edge[b + 1])])
            yield top, bottom, *self._spans(self._keys(active, top, bottom))
            carried = active[self.r1[active] > bottom]

    def _keys(self, edge, top, bottom):
        """Sorted keys of the crossings of edges ``edge`` (indices) and of
        the horizontal edges in rows [top, bottom).

        Edge e crosses scanline r at x computed as GDAL does, in GDAL's
        order of operations: (r + .5 - ylo) * xspan / yspan + xlo."""
        first = np.maximum(self.r0[edge], top)
        count = np.minimum(self.r1[edge], bottom) - first
        k = np.repeat(np.arange(len(edge)), count)
        row = np.arange(len(k)) - (np.cumsum(count) - count - first)[k]
        edge = edge[k]
        cross = row + 0.5
        cross -= self.ylo[edge]
        cross *= self.xspan[edge]
        cross /= self.yspan[edge]
        cross += self.xlo[edge]
        key = row << self.row_shift
        key += self.group_key[edge]
        key += _column(cross, self.width)
        i, j = np.searchsorted(self.horizontal_key, [top << self.row_shift, bottom << self.row_shift])
        key = np.concatenate([key, self.horizontal_key[i:j]])
        key.sort()
        return key

    def _spans(self, key):
        """Spans (row, polygon, c0, c1) of sorted keys, columns [c0, c1),
        empty ones dropped.  Keys pair up within each group and row (every
        closed ring crosses a scanline an even number of times)."""
        col_mask = (1 << self.col_bits) - 1
        c0, c1 = key[0::2] & col_mask, key[1::2] & col_mask
        keep = c1 > c0
        row_group = key[0::2][keep] >> self.col_bits
        group = row_group & ((1 << self.group_bits) - 1)
        return row_group >> self.group_bits, self.polygon_of_group[group], c0[keep], c1[keep]


def _edges_by_chunk(rings, polygon_of_ring, transform, height):
    """The 7 + 4 arrays of ``_pixel_edges`` for all ``rings``, each as a list
    of parts: the rings are read in chunks of about ``EDGE_CHUNK`` vertices."""
    ring_end = np.cumsum([len(ring) for ring in rings])
    firsts = np.unique(np.searchsorted(ring_end, np.arange(0, ring_end[-1], EDGE_CHUNK), "right"))
    columns = [[] for _ in range(11)]
    for a, b in zip(firsts, [*firsts[1:], len(rings)]):
        crossing, horizontal = _pixel_edges(rings[a:b], polygon_of_ring[a:b], transform, height)
        for column, part in zip(columns, crossing + horizontal):
            column.append(part)
    return columns


def _pixel_edges(rings, polygon_of_ring, transform, height):
    """The edges of ``rings`` in pixel space: those crossing scanlines of
    the grid as (xlo, ylo, xspan, yspan, r0, r1, polygon), and the
    horizontal ones GDAL burns on their own as (row, x1, x2, polygon).

    Each ring is walked from its last vertex to its first, then from vertex
    i - 1 to i: edge i goes from (x1, y1)[i] to (x2, y2)[i].  It crosses the
    scanlines r in [r0, r1), those with ylo <= r + .5 < yhi (half-open, so
    horizontal edges cross none)."""
    xy, ring_length = _vertices(rings)
    x0, dx, y0, dy = transform
    # GDALInvGeoTransform's no-rotation case, then GDAL's affine evaluation.
    x2 = -x0 / dx + xy[:, 0] * (1.0 / dx)
    y2 = -y0 / dy + xy[:, 1] * (1.0 / dy)
    start = np.cumsum(ring_length) - ring_length
    x1, y1 = np.roll(x2, 1), np.roll(y2, 1)
    x1[start], y1[start] = x2[start + ring_length - 1], y2[start + ring_length - 1]
    polygon = np.repeat(polygon_of_ring, ring_length)

    r0 = _first_row_at_or_above(np.minimum(y1, y2), height)
    r1 = _first_row_at_or_above(np.maximum(y1, y2), height)
    c = np.flatnonzero(r1 > r0)
    up = y1[c] < y2[c]
    xlo, xhi = np.where(up, x1[c], x2[c]), np.where(up, x2[c], x1[c])
    ylo, yhi = np.where(up, y1[c], y2[c]), np.where(up, y2[c], y1[c])
    crossing = (xlo, ylo, xhi - xlo, yhi - ylo, r0[c].astype(np.int32), r1[c].astype(np.int32),
                polygon[c])

    h = _horizontal_edges(x1, y1, x2, y2, xy, start, ring_length, height)
    horizontal = np.floor(y2[h]).astype(np.int64), x1[h], x2[h], polygon[h]
    return crossing, horizontal


def _joined(parts):
    """``np.concatenate(parts)``, emptying the list ``parts``."""
    whole = np.concatenate(parts)
    parts.clear()
    return whole


def _band_tops(r0, r1, height, max_rows):
    """First rows of the bands, then ``height``: each band at most
    ``max_rows`` rows and, unless it is one row, ``BAND_CROSSINGS``
    crossings of the edges crossing scanlines [r0, r1)."""
    per_row = np.cumsum(np.bincount(r0, minlength=height + 1) - np.bincount(r1, minlength=height + 1))
    before = np.concatenate([[0], np.cumsum(per_row[:height])])   # crossings above each row
    tops = [0]
    while tops[-1] < height:
        top = tops[-1]
        bottom = int(np.searchsorted(before, before[top] + BAND_CROSSINGS, "right")) - 1
        tops.append(min(max(bottom, top + 1), top + max_rows, height))
    return tops


def _column(x, width):
    """The pixel boundary ``floor(x + 0.5)`` nearest to x, clipped to [0, width]
    (``x`` is overwritten)."""
    x += 0.5
    np.floor(x, out=x)
    return np.clip(x, 0, width, out=x).astype(np.int64)


def _horizontal_edges(x1, y1, x2, y2, xy, start, ring_length, height):
    """Indices of the horizontal edges (x1, y1) -> (x2, y2) (pixel space)
    that GDAL burns on their own: lying exactly on a scanline of the grid and
    walked towards decreasing column once their ring is made clockwise in map
    coordinates (vertices ``xy``)."""
    row = np.floor(y2)
    h = np.flatnonzero((y1 == y2) & (x1 != x2) & (row + 0.5 == y2) & (row >= 0) & (row < height))
    if len(h) == 0:
        return h
    ring = np.searchsorted(start, h, side="right") - 1
    rings, ring = np.unique(ring, return_inverse=True)
    clockwise = _is_clockwise(xy[:, 0], xy[:, 1], start[rings], ring_length[rings])[ring]
    # Walking a counter-clockwise ring reverses its edges.
    return h[(x1[h] > x2[h]) == clockwise]


def _paint(start, end, polygon, size, value):
    """The pixels of one band: ``size`` values, ``value[1 + p]`` where the
    latest polygon p of the spans [start, end) (flat pixel indices) covers
    them, ``value[0]`` elsewhere.

    The span ends cut the band into pieces, and each piece takes the largest
    polygon index among the spans covering it (``_latest``).  The band is
    then the run-length decoding of the pieces' values.
    """
    n = len(start)
    bits = (2 * n).bit_length()
    # Sort all ends with their span number in the low bits; ``piece[k]`` is
    # the rank of end k among the distinct ends (the piece it opens).
    ends = np.concatenate([start, end]) << bits | np.arange(2 * n)
    ends.sort()
    cut = ends >> bits
    new = np.ones(2 * n, dtype=bool)
    new[1:] = cut[1:] != cut[:-1]
    piece = np.empty(2 * n, dtype=np.int32)      # int32: pieces and polygons < 2**31
    piece[ends & ((1 << bits) - 1)] = np.cumsum(new) - 1
    cut = cut[new]
    latest = _latest(piece[:n], piece[n:], polygon.astype(np.int32) + 1, len(cut))
    runs = np.diff(cut, prepend=0, append=size)
    return np.repeat(value[np.concatenate([[0], latest])], runs)


def _latest(first, past, polygon, n):
    """For each of ``n`` pieces, the largest ``polygon`` among the spans
    covering it (span i covers pieces [first[i], past[i])), 0 for none.

    A range of L pieces is the union of two ranges of 2**k pieces, k =
    floor(log2(L)), one starting at ``first``, one ending at ``past`` (they
    may overlap: harmless for a maximum).  ``latest`` holds, for the current
    k, the largest polygon of the ranges of 2**k pieces starting at each
    piece; from the longest ranges down, each level hands its values to the
    two halves of its ranges, so that level 0 is the answer (a sparse table
    read backwards).  Work: O(spans + pieces * log(longest span)), whatever
    the overlaps, all exact and deterministic (``np.maximum.at``).
    """
    level = np.frexp(past - first)[1] - 1       # floor(log2(L)), exact
    latest = np.zeros(n, dtype=polygon.dtype)
    for k in range(int(level.max()), -1, -1):
        half = 1 << k
        latest[half:] = np.maximum(latest[half:], latest[:-half])   # 2**(k+1) -> halves
        at = np.flatnonzero(level == k)
        value = polygon[at]
        np.maximum.at(latest, first[at], value)
        np.maximum.at(latest, past[at] - half, value)
    return latest


def _expand(start, end):
    """Concatenation of ``arange(s, e)`` for all (start, end), without a Python loop."""
    length = end - start
    return np.arange(int(length.sum())) + np.repeat(start - (np.cumsum(length) - length), length)


def _is_clockwise(x, y, start, n):
    """OGR's ``OGRLinearRing::isClockwise`` for the closed rings of ``n``
    vertices from ``start`` in ``x, y`` (map units), vectorised.

    The pivot is the first lowest-then-rightmost vertex (closing vertex
    excluded); the sign of the cross product of its two neighbours decides.
    Degenerate pivots (duplicated, or a neighbour within 1e-5 map units, or a
    zero cross product) fall back to OGR's shoelace sum in OGR's order.
    """
    vertex = _expand(start, start + n)
    x, y, start = x[vertex], y[vertex], np.cumsum(n) - n
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
