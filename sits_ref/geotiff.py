"""GeoTIFF reading and writing with tifffile only (no GDAL).

Georeferencing follows the GeoTIFF 1.0 tags, interpreted the way GDAL does:

* ``ModelPixelScale`` (33550) + ``ModelTiepoint`` (33922), or ``ModelTransformation``
  (34264), give the affine transform, returned as a GDAL geotransform 6-tuple
  ``(x0, dx, rx, y0, ry, dy)``: the map coordinates of pixel (col, row) corner are
  ``x = x0 + col*dx + row*rx`` and ``y = y0 + col*ry + row*dy``.
* ``GeoKeyDirectory`` (34735) gives the EPSG code (ProjectedCSTypeGeoKey 3072, else
  GeographicTypeGeoKey 2048). A ``PixelIsPoint`` raster (GTRasterTypeGeoKey 1025 = 2)
  is shifted by half a pixel, as GDAL does by default.
* ``GDAL_NODATA`` (42113) is the nodata value, an ASCII number.

Arrays are always band-first: ``(count, height, width)``. Windows are
``(row0, col0, height, width)`` in pixels. Reads decode only the strips or tiles that
intersect the window, so a 10980 x 10980 tile never sits in memory whole. Writes go
to a temporary name first (:mod:`sits_ref.atomic`, the one sibling to copy along).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace

import numpy as np
import tifffile

from .atomic import atomic_path

TAG_PIXEL_SCALE = 33550
TAG_TIEPOINT = 33922
TAG_TRANSFORMATION = 34264
TAG_GEOKEYS = 34735
TAG_GDAL_METADATA = 42112
TAG_GDAL_NODATA = 42113

KEY_RASTER_TYPE = 1025
KEY_GEOGRAPHIC_CRS = 2048
KEY_PROJECTED_CRS = 3072
USER_DEFINED = 32767
CREATE_STRIP_ROWS = 64     # rows per strip of create_geotiff's files (2.7 MB of float32
                           # at 10980 columns)


class GeoTiffError(ValueError):
    """A GeoTIFF is missing, unreadable or not georeferenced as expected."""


@dataclass(frozen=True)
class GeoRef:
    """Where a raster sits on Earth.

    Attributes:
        transform: GDAL geotransform ``(x0, dx, rx, y0, ry, dy)`` in CRS units (metres
            for UTM); ``(x0, y0)`` is the upper-left corner of the upper-left pixel.
        epsg: EPSG code of the CRS, or None when the file has no EPSG code.
        nodata: value marking missing pixels, or None.
    """

    transform: tuple
    epsg: int | None
    nodata: float | None = None

    def window(self, row0: int, col0: int) -> "GeoRef":
        """GeoRef of a sub-window whose upper-left pixel is (row0, col0)."""
        x0, dx, rx, y0, ry, dy = self.transform
        return replace(self, transform=(x0 + col0 * dx + row0 * rx, dx, rx,
                                        y0 + col0 * ry + row0 * dy, ry, dy))

    def same_grid(self, other: "GeoRef", tol: float = 1e-6) -> bool:
        """True when both share the CRS and the transform (to ``tol`` CRS units)."""
        return self.epsg == other.epsg and np.allclose(self.transform, other.transform,
                                                       rtol=0, atol=tol)


@dataclass(frozen=True)
class RasterInfo:
    """Shape, type and georeferencing of the first image of a GeoTIFF."""

    path: str
    height: int
    width: int
    count: int
    dtype: np.dtype
    georef: GeoRef


def _geokeys(tags) -> dict:
    """GeoKeyDirectory as {key id: value}, values stored in other tags skipped."""
    if TAG_GEOKEYS not in tags:
        return {}
    keys = tags[TAG_GEOKEYS].value
    n_keys = keys[3]
    out = {}
    for k in range(1, n_keys + 1):
        key_id, location, _count, value = keys[4 * k: 4 * k + 4]
        if location == 0:
            out[key_id] = value
    return out


def _transform(tags, path: str, pixel_is_point: bool) -> tuple:
    if TAG_TRANSFORMATION in tags:
        m = tags[TAG_TRANSFORMATION].value
        transform = (m[3], m[0], m[1], m[7], m[4], m[5])
    elif TAG_PIXEL_SCALE in tags and TAG_TIEPOINT in tags:
        sx, sy = tags[TAG_PIXEL_SCALE].value[:2]
        i, j, _k, x, y = tags[TAG_TIEPOINT].value[:5]
        transform = (x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy)
    else:
        raise GeoTiffError(f"{path}: no georeferencing (expected ModelPixelScale + "
                           "ModelTiepoint or ModelTransformation tags)")
    if pixel_is_point:  # GDAL moves the origin from the pixel centre to its corner
        x0, dx, rx, y0, ry, dy = transform
        transform = (x0 - 0.5 * (dx + rx), dx, rx, y0 - 0.5 * (ry + dy), ry, dy)
    return tuple(float(v) for v in transform)


def _info_from_page(page, path: str) -> RasterInfo:
    _check_segments(page, path)
    tags = page.tags
    geokeys = _geokeys(tags)
    epsg = geokeys.get(KEY_PROJECTED_CRS, geokeys.get(KEY_GEOGRAPHIC_CRS))
    if epsg == USER_DEFINED:
        epsg = None
    nodata = None
    if TAG_GDAL_NODATA in tags:
        text = str(tags[TAG_GDAL_NODATA].value).strip().rstrip("\x00")
        try:
            nodata = float(text)
        except ValueError:
            raise GeoTiffError(f"{path}: GDAL_NODATA tag {text!r} is not a number") from None
    georef = GeoRef(_transform(tags, path, geokeys.get(KEY_RASTER_TYPE) == 2), epsg, nodata)
    count = page.samplesperpixel
    return RasterInfo(path, page.imagelength, page.imagewidth, count, page.dtype, georef)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def _open(path):
    """TiffFile of ``path``; tifffile's log lines about bad tags are held back, since a
    broken file then fails one of our checks with a single GeoTiffError line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise GeoTiffError(f"{path}: file not found")
    log = tifffile.logger()
    disabled, log.disabled = log.disabled, True
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile raises several types for corrupt files
        raise GeoTiffError(f"{path}: not a readable TIFF ({_one_line(exc)})") from None
    finally:
        log.disabled = disabled
    with tif:
        yield tif


def _check_segments(page, path: str) -> None:
    """Refuse a file whose strips/tiles are not all listed or not all inside the file:
    a truncated download or copy, found from the header alone."""
    kind = "tile" if page.is_tiled else "strip"
    seg_h, seg_w = _segment_grid(page)
    planes = page.samplesperpixel if page.planarconfig == 2 else 1
    expected = planes * -(-page.imagelength // seg_h) * -(-page.imagewidth // seg_w)
    offsets, counts = page.dataoffsets, page.databytecounts
    if len(offsets) != expected or len(counts) != expected:
        raise GeoTiffError(f"{path}: truncated or corrupt: the header lists {len(offsets)} "
                           f"{kind} offsets and {len(counts)} byte counts for {expected} "
                           f"{kind}s")
    ends, size = np.add(offsets, counts, dtype=np.int64), os.path.getsize(path)
    if ends.size and ends.max() > size:
        last = int(np.argmax(ends))
        raise GeoTiffError(f"{path}: truncated: {kind} {last} ends at byte {ends[last]} "
                           f"but the file has {size} bytes")


def read_info(path) -> RasterInfo:
    """Shape, dtype and georeferencing of a GeoTIFF, without reading pixels.

    A file whose strips/tiles do not all lie inside it (truncated) is refused here.
    """
    path = os.fspath(path)
    with _open(path) as tif:
        return _info_from_page(tif.pages.first, path)


def read_window(path, window: tuple | None = None) -> np.ndarray:
    """Read pixels of a GeoTIFF as ``(count, height, width)`` in the file's dtype.

    Args:
        path: GeoTIFF file.
        window: ``(row0, col0, height, width)``, wholly inside the image; None reads all.

    Only the strips/tiles that intersect the window are read and decoded; a strip that
    cannot be decoded (truncated or corrupt file) raises GeoTiffError naming the file.
    """
    path = os.fspath(path)
    with _open(path) as tif:
        page = tif.pages.first
        info = _info_from_page(page, path)
        row0, col0, h, w = window or (0, 0, info.height, info.width)
        if row0 < 0 or col0 < 0 or h < 1 or w < 1 or row0 + h > info.height \
                or col0 + w > info.width:
            raise GeoTiffError(f"{path}: window {window} outside the image "
                               f"({info.height} x {info.width})")
        return _read_segments(tif, page, info.count, (row0, col0, h, w), path)


def _segment_grid(page) -> tuple[int, int]:
    """(rows, cols) of pixels in one strip or tile."""
    if page.is_tiled:
        return page.tilelength, page.tilewidth
    return page.rowsperstrip if page.rowsperstrip else page.imagelength, page.imagewidth


def _read_segments(tif, page, count: int, window: tuple, path: str) -> np.ndarray:
    row0, col0, h, w = window
    seg_h, seg_w = _segment_grid(page)
    per_plane_rows = -(-page.imagelength // seg_h)
    per_plane_cols = -(-page.imagewidth // seg_w)
    planes = count if page.planarconfig == 2 else 1
    wanted = []
    for plane in range(planes):
        for r in range(row0 // seg_h, (row0 + h - 1) // seg_h + 1):
            for c in range(col0 // seg_w, (col0 + w - 1) // seg_w + 1):
                wanted.append((plane * per_plane_rows + r) * per_plane_cols + c)
    out = np.empty((count, h, w), page.dtype)
    offsets = [page.dataoffsets[i] for i in wanted]
    counts = [page.databytecounts[i] for i in wanted]
    try:
        for data, index in tif.filehandle.read_segments(offsets, counts, wanted, sort=True):
            segment, (plane, _d, seg_r, seg_c, _s), _shape = page.decode(
                data, index, jpegtables=page.jpegtables)
            seg = segment.reshape(segment.shape[-3:])  # (rows, cols, contiguous samples)
            r_lo, c_lo = max(row0, seg_r), max(col0, seg_c)
            r_hi = min(row0 + h, seg_r + seg.shape[0], page.imagelength)
            c_hi = min(col0 + w, seg_c + seg.shape[1], page.imagewidth)
            if r_lo >= r_hi or c_lo >= c_hi:
                continue
            block = seg[r_lo - seg_r:r_hi - seg_r, c_lo - seg_c:c_hi - seg_c]
            bands = slice(plane, plane + 1) if planes > 1 else slice(None)
            out[bands, r_lo - row0:r_hi - row0, c_lo - col0:c_hi - col0] = \
                np.moveaxis(block, -1, 0)
    except Exception as exc:  # codecs and tifffile raise several types
        raise GeoTiffError(f"{path}: cannot decode pixels (file truncated or corrupt: "
                           f"{_one_line(exc)})") from None
    return out


def _geotiff_tags(georef: GeoRef, nodata) -> list:
    """extratags for tifffile: transform as ModelTransformation when rotated."""
    x0, dx, rx, y0, ry, dy = georef.transform
    if rx == 0 and ry == 0:
        tags = [(TAG_PIXEL_SCALE, "d", 3, (dx, -dy, 0.0), True),
                (TAG_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True)]
    else:
        matrix = (dx, rx, 0, x0, ry, dy, 0, y0, 0, 0, 0, 0, 0, 0, 0, 1)
        tags = [(TAG_TRANSFORMATION, "d", 16, matrix, True)]
    # GeoKeyDirectory: version 1.1.0; model type (projected=1 / geographic=2),
    # raster type PixelIsArea (1), then the EPSG code.
    if georef.epsg is not None:
        geographic = 4000 <= georef.epsg < 5000
        keys = [1, 1, 0, 3, 1024, 0, 1, 2 if geographic else 1, 1025, 0, 1, 1,
                KEY_GEOGRAPHIC_CRS if geographic else KEY_PROJECTED_CRS, 0, 1, georef.epsg]
    else:
        keys = [1, 1, 0, 1, 1025, 0, 1, 1]
    tags.append((TAG_GEOKEYS, "H", len(keys), keys, True))
    if nodata is not None:
        tags.append((TAG_GDAL_NODATA, "s", 0, _format_nodata(nodata), True))
    return tags


def _format_nodata(value) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _gdal_metadata(metadata: dict | None) -> list:
    """GDAL_METADATA XML tag: dataset-level items, as GDAL writes and reads them."""
    if not metadata:
        return []
    from xml.sax.saxutils import escape
    items = "".join(f'<Item name="{escape(str(k))}">{escape(str(v))}</Item>'
                    for k, v in metadata.items())
    return [(TAG_GDAL_METADATA, "s", 0, f"<GDALMetadata>{items}</GDALMetadata>", True)]


def colormap_array(colors: dict) -> np.ndarray:
    """TIFF palette (3, 256) uint16 from {class value: (r, g, b) 0-255}; others black."""
    cmap = np.zeros((3, 256), np.uint16)
    for value, rgb in colors.items():
        cmap[:, int(value)] = np.asarray(rgb, np.uint16) * 257
    return cmap


def _write_kwargs(georef, nodata, colormap, metadata) -> dict:
    kwargs = dict(extratags=_geotiff_tags(georef, nodata) + _gdal_metadata(metadata),
                  metadata=None)
    if colormap is not None:
        kwargs.update(photometric="palette", colormap=colormap_array(colormap))
    else:
        kwargs.update(photometric="minisblack", planarconfig="separate")
    return kwargs


def write_geotiff(path, array: np.ndarray, georef: GeoRef, nodata=None, colormap=None,
                  metadata: dict | None = None) -> None:
    """Write ``array`` (count, H, W) or (H, W) as a deflate-compressed GeoTIFF.

    Written to a temporary name and renamed, so a crash never leaves half a file.

    Args:
        colormap: {value: (r, g, b)} for a single-band uint8 class map (TIFF palette,
            read by GDAL and QGIS as a colour table).
        metadata: dataset-level items stored in the GDAL_METADATA tag (e.g. class names).
    """
    path = os.fspath(path)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1 and colormap is not None:
        array = array[0]
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression="zlib", predictor=array.dtype.kind != "f",
                         rowsperstrip=16,
                         **_write_kwargs(georef, nodata, colormap, metadata))


@contextlib.contextmanager
def create_geotiff(path, height: int, width: int, dtype, georef: GeoRef, nodata=None,
                   colormap=None, metadata: dict | None = None):
    """Create an uncompressed single-band GeoTIFF and yield it as a writable memmap (H, W).

    For outputs too big for memory (a whole-tile map): write blocks into the memmap;
    the file appears under ``path`` only when the ``with`` block exits normally. Strips
    of ``CREATE_STRIP_ROWS`` rows, stored back to back (so the memmap still works), let a
    later :func:`read_window` read a few rows without the whole image.
    """
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, shape=(height, width), dtype=dtype,
                         rowsperstrip=CREATE_STRIP_ROWS,
                         **_write_kwargs(georef, nodata, colormap, metadata))
        image = open_for_update(tmp)
        yield image
        image.flush()
        del image


def open_for_update(path) -> np.memmap:
    """Writable memmap (H, W) of a file made by :func:`create_geotiff` (e.g. its
    temporary file, ``image.filename``, opened by another process to write other rows).
    """
    return tifffile.memmap(os.fspath(path), mode="r+")
