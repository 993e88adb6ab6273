"""Sentinel-2 product folders as one time series on the 10 m grid, with validity masks.

Three layouts are recognised, from the file names under a folder (searched recursively):

* **Theia L3A** monthly syntheses (the paper's product), one folder per date::

      SENTINEL2X_20180415-000000-000_L3A_T31TCJ_C_V2-2/
          SENTINEL2X_20180415-000000-000_L3A_T31TCJ_C_V2-2_FRC_B2.tif ... _FRC_B12.tif
          MASKS/SENTINEL2X_20180415-000000-000_L3A_T31TCJ_C_V2-2_FLG_R1.tif

  FLG (Theia's L3A flags): 0 = no data, 1 = cloud or shadow, any other value valid.
* **Theia L2A** (MAJA) dated acquisitions, ``SENTINEL2A|B_<date>-<time>_L2A_<tile>_..._FRE_B<k>.tif``
  with ``MASKS/*_CLM_R1.tif`` (cloud: non-zero), ``*_EDG_R1.tif`` (outside the swath:
  non-zero) and ``*_SAT_R1.tif`` (saturated band: non-zero); the ``_R2`` masks of the
  20 m bands are used as well when present.
* **Per-band GeoTIFFs**, e.g. Cloud-Optimised GeoTIFFs from a STAC catalogue: one folder
  per date whose name holds the date (``2018-04-15``, ``20180415``, ``S2B_31TCJ_20180415_0_L2A``),
  one file per band (``B02.tif`` or ``B2.tif``, ``B8A.tif``), and optionally ``SCL.tif``,
  Sen2Cor's scene classification, as the mask: 0 (no data), 1 (saturated or defective),
  3 (cloud shadow), 8, 9 (cloud), 10 (cirrus) are invalid.

Values are digital numbers, reflectance x 10000 (``SCALE``); -10000 is Theia's no data.
Per pixel and date an observation is invalid when a mask says so, or when a band holds
the no-data value (the file's nodata tag, or -10000), NaN or inf; gap-filling
(:mod:`sits_ref.gapfill`) is the reader's caller's job.

20 m bands (B5, B6, B7, B8A, B11, B12; and 20 m masks) are brought to the 10 m grid by
**nearest neighbour, 2x**: each 20 m pixel becomes the 2 x 2 block of 10 m pixels it
covers, exactly (no new values; the 20 m grid must share the 10 m grid's corner). A
windowed read reads only the 20 m rows and columns under the window. Files are decoded
on a few threads (zlib decoding releases the GIL).
"""
from __future__ import annotations

import datetime
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .geotiff import GeoRef, GeoTiffError, read_info, read_window
from .indices import PAPER_BANDS

SCALE = 1e-4                  # digital number -> reflectance
THEIA_NODATA = -10000
NATIVE_METRES = {"B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20,
                 "B8": 10, "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20}
SCL_INVALID = (0, 1, 3, 8, 9, 10)    # no data, defective, shadow, cloud x2, cirrus
READ_THREADS = 4                     # decoding threads; more gain little on 2-4 cores

_THEIA = re.compile(r"(?P<mission>SENTINEL2[ABX])_(?P<date>\d{8})-\d{6}-\d{3}_(?P<level>L2A|L3A)"
                    r"_(?P<tile>T\d{2}[A-Z]{3})_.*_(?P<kind>FRC|FRE|FLG|CLM|EDG|SAT)"
                    r"_?(?P<band>B\d{1,2}A?|R[12])\.tif", re.IGNORECASE)
_THEIA_LIKE = re.compile(r"SENTINEL2.*_(FRC|FRE)_B\w*\.tif|SENTINEL2.*_(FLG|CLM|EDG|SAT)_R\d\.tif",
                         re.IGNORECASE)
_BAND_FILE = re.compile(r"(?P<band>B\d{1,2}A?|SCL)\.tif", re.IGNORECASE)
_DATE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")
_TILE = re.compile(r"(?<![A-Z0-9])T?(\d{2}[A-Z]{3})(?![A-Z0-9])")
THEIA_MASKS = {"L3A": ("FLG",), "L2A": ("CLM", "EDG", "SAT")}
MASK_MEANING = {"FLG": "FLG (0 no data, 1 cloud or shadow)", "CLM": "CLM (cloud if non-zero)",
                "EDG": "EDG (no data if non-zero)", "SAT": "SAT (saturated if non-zero)",
                "SCL": "SCL (invalid: 0, 1, 3, 8, 9, 10)"}


class ProductError(ValueError):
    """A product folder is not one usable time series; the message names the file."""


@dataclass
class Mask:
    """One mask file of a date: its ``kind`` (FLG, CLM, EDG, SAT, SCL) and how to read
    it: the ``invalid_values`` listed, or (when None) any non-zero value is invalid."""

    path: str
    kind: str
    invalid_values: tuple | None = None

    def invalid(self, raw: np.ndarray) -> np.ndarray:
        if self.invalid_values is None:
            return raw != 0
        return np.isin(raw, self.invalid_values)


@dataclass
class Products:
    """A time series of products: per date, one file per band and the mask files.

    Attributes: folder, layout ("theia_l3a", "theia_l2a", "per_band"), tile (or None),
    dates ('YYYY-MM-DD', increasing), bands, files[t][band] paths, masks[t] lists of
    :class:`Mask`; set by :func:`find_products` after checking the files: height, width,
    georef (the finest grid, 10 m), factor[path] (1 on that grid, 2 for 20 m files) and
    nodata[path] of each band file.
    """

    folder: str
    layout: str
    tile: str | None
    dates: list
    bands: list
    files: list
    masks: list
    height: int = 0
    width: int = 0
    georef: GeoRef | None = None
    factor: dict = field(default_factory=dict)
    nodata: dict = field(default_factory=dict)

    def read(self, window=None):
        """(values (T, C, h, w) digital numbers in the files' type, valid (T, h, w)
        bool) of a ``window`` (row0, col0, h, w) of the 10 m grid (None: all of it)."""
        window = window or (0, 0, self.height, self.width)
        jobs = [(t, band, path) for t, by_band in enumerate(self.files)
                for band, path in by_band.items()]
        jobs += [(t, None, mask) for t, masks in enumerate(self.masks) for mask in masks]
        with ThreadPoolExecutor(READ_THREADS) as pool:
            arrays = list(pool.map(lambda job: self._read_10m(job[2], window), jobs))
        _, _, h, w = window
        dtype = np.result_type(*(raw.dtype for (_, band, _), raw in zip(jobs, arrays)
                                 if band is not None))
        values = np.empty((len(self.dates), len(self.bands), h, w), dtype)
        valid = np.ones((len(self.dates), h, w), bool)
        index = {b: i for i, b in enumerate(self.bands)}
        for (t, band, item), raw in zip(jobs, arrays):
            if band is None:
                valid[t] &= ~item.invalid(raw)
            else:
                values[t, index[band]] = raw
                valid[t] &= valid_values(raw, self.nodata[item])
        return values, valid

    def _read_10m(self, item, window):
        """One single-band file (band path or Mask) read on the 10 m ``window``."""
        path = item.path if isinstance(item, Mask) else item
        factor = self.factor[path]
        try:
            if factor == 1:
                return read_window(path, window)[0]
            return read_upsampled(path, window, factor)
        except GeoTiffError as exc:
            raise ProductError(str(exc)) from None


def valid_values(raw, nodata):
    """True where ``raw`` is neither the ``nodata`` value (None: no such value), NaN
    nor inf."""
    ok = np.isfinite(raw) if raw.dtype.kind == "f" else np.ones(raw.shape, bool)
    if nodata is not None:
        ok &= raw != nodata
    return ok


def read_upsampled(path, window, factor: int) -> np.ndarray:
    """The ``window`` of the fine grid (``factor`` x finer than the file) of a
    single-band file, by nearest neighbour: reads only the coarse pixels under it."""
    r0, c0, h, w = window
    cr0, cc0 = r0 // factor, c0 // factor
    cr1, cc1 = (r0 + h - 1) // factor + 1, (c0 + w - 1) // factor + 1
    coarse = read_window(path, (cr0, cc0, cr1 - cr0, cc1 - cc0))[0]
    fine = coarse.repeat(factor, axis=0).repeat(factor, axis=1)
    dr, dc = r0 - cr0 * factor, c0 - cc0 * factor
    return fine[dr:dr + h, dc:dc + w]


# ------------------------------------------------------------------------ discovery


def find_products(folder, bands=PAPER_BANDS) -> Products:
    """Scan ``folder`` for products of one layout and one tile; check dates, bands,
    masks and grids. Raises ProductError naming the offending file."""
    folder = os.path.abspath(os.fspath(folder))
    if not os.path.isdir(folder):
        raise ProductError(f"{folder}: not a folder")
    tifs = sorted(os.path.join(root, f) for root, _, names in os.walk(folder)
                  for f in names if f.lower().endswith((".tif", ".tiff")))
    theia = [p for p in tifs if _THEIA_LIKE.search(os.path.basename(p))]
    products = _theia(folder, theia, bands) if theia else _per_band(folder, tifs, bands)
    _check_grids(products)
    return products


def _theia(folder, paths, bands) -> Products:
    entries = []
    for path in paths:
        m = _THEIA.fullmatch(os.path.basename(path))
        if not m:
            raise ProductError(f"{path}: cannot parse this Theia file name (expected "
                               "SENTINEL2A|B|X_YYYYMMDD-HHMMSS-mmm_L2A|L3A_Txxxxx_..._"
                               "FRE|FRC_B<k>.tif or MASKS/..._FLG|CLM|EDG|SAT_R1|R2.tif)")
        entries.append((path, m))
    levels = sorted({m["level"].upper() for _, m in entries})
    if len(levels) > 1:
        raise ProductError(f"{folder}: mixes Theia {' and '.join(levels)} products; "
                           "use one product level per folder")
    level = levels[0]
    _one_tile(folder, [(p, m["tile"].upper()) for p, m in entries])
    by_date = {}
    for path, m in entries:
        date = _iso_date(m["date"], path)
        acquisition = m.group(0).split(f"_{m['level']}_")[0]       # mission + date-time
        slot = by_date.setdefault(date, {"acq": acquisition, "files": {}, "masks": [],
                                         "kinds": set()})
        if slot["acq"] != acquisition:
            raise ProductError(f"{path}: two products for date {date} ({slot['acq']} and "
                               f"{acquisition}); keep one product per date")
        kind = m["kind"].upper()
        if kind in ("FRC", "FRE"):
            slot["files"][_band_name(m["band"].upper())] = path
        elif kind in THEIA_MASKS[level]:
            slot["masks"].append(Mask(path, kind, (0, 1) if kind == "FLG" else None))
            slot["kinds"].add(kind)
    dates = sorted(by_date)
    for date in dates:
        missing = [k for k in THEIA_MASKS[level] if k not in by_date[date]["kinds"]]
        if missing:
            raise ProductError(f"{folder}: date {date} has no {', '.join(missing)} mask "
                               f"(MASKS/..._{missing[0]}_R1.tif)")
    return Products(folder, f"theia_{level.lower()}", entries[0][1]["tile"].upper(), dates,
                    list(bands), _bands_per_date(by_date, dates, bands, folder),
                    [by_date[d]["masks"] for d in dates])


def _per_band(folder, paths, bands) -> Products:
    by_date, tiles = {}, []
    for path in paths:
        m = _BAND_FILE.fullmatch(os.path.basename(path))
        if not m:
            continue
        parent = os.path.basename(os.path.dirname(path))
        d = _DATE.search(parent)
        if not d:
            raise ProductError(f"{path}: cannot read a date from its folder name {parent!r} "
                               "(expected YYYY-MM-DD or YYYYMMDD in it)")
        date = _iso_date("".join(d.groups()), path)
        tile = _TILE.search(parent.upper())
        tiles.append((path, tile.group(1) if tile else None))
        slot = by_date.setdefault(date, {"dir": os.path.dirname(path), "files": {}, "masks": []})
        if slot["dir"] != os.path.dirname(path):
            raise ProductError(f"{path}: two folders for date {date} ({slot['dir']} and "
                               f"{os.path.dirname(path)}); keep one per date")
        name = m["band"].upper()
        if name == "SCL":
            slot["masks"].append(Mask(path, "SCL", SCL_INVALID))
        else:
            slot["files"][_band_name(name)] = path
    if not by_date:
        raise ProductError(f"{folder}: no Sentinel-2 products found (neither Theia "
                           "L3A/L2A files nor date folders of B02.tif ... band files)")
    _one_tile(folder, [(p, t) for p, t in tiles if t])
    dates = sorted(by_date)
    tile = next((t for _, t in tiles if t), None)
    return Products(folder, "per_band", tile and f"T{tile}", dates, list(bands),
                    _bands_per_date(by_date, dates, bands, folder),
                    [by_date[d]["masks"] for d in dates])


def _band_name(text: str) -> str:
    """'B02' -> 'B2', 'B8A' -> 'B8A': file names pad band numbers, sits_ref does not."""
    number = text[1:].rstrip("A")
    return f"B{int(number)}{text[1 + len(number):]}"


def _iso_date(digits: str, path: str) -> str:
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8])).isoformat()
    except ValueError:
        raise ProductError(f"{path}: {digits} is not a calendar date") from None


def _one_tile(folder, tagged):
    tiles = {}
    for path, tile in tagged:
        tiles.setdefault(tile, path)
    if len(tiles) > 1:
        raise ProductError(f"{folder}: mixes tiles " + ", ".join(
            f"{t} ({os.path.basename(p)})" for t, p in sorted(tiles.items()))
            + "; use one folder per tile")


def _bands_per_date(by_date, dates, bands, folder):
    files = []
    for date in dates:
        have = by_date[date]["files"]
        missing = [b for b in bands if b not in have]
        if missing:
            raise ProductError(f"{folder}: date {date} has no band {', '.join(missing)} "
                               f"(found {', '.join(sorted(have)) or 'none'})")
        files.append({b: have[b] for b in bands})
    return files


def _check_grids(products: Products) -> None:
    """Every band file and mask is single-band, on the finest grid (10 m) or on a grid
    2x coarser with the same corner, and each band at 10 m or at its native resolution.
    Sets the products' grid, the factor of each file and the no-data value of each band."""
    paths = [p for by_band in products.files for p in by_band.values()]
    masks = [m.path for ms in products.masks for m in ms]
    infos = {}
    for path in paths + masks:
        try:
            infos[path] = read_info(path)
        except GeoTiffError as exc:
            raise ProductError(str(exc)) from None
    base = min(infos.values(), key=lambda i: abs(i.georef.transform[1]))
    x0, dx, _, y0, _, dy = base.georef.transform
    band_of = {p: b for by_band in products.files for b, p in by_band.items()}
    for path, info in infos.items():
        fx0, fdx, frx, fy0, fry, fdy = info.georef.transform
        factor = round(fdx / dx)
        metres = abs(fdx)
        if info.count != 1:
            raise ProductError(f"{path}: {info.count} bands, expected one band per file")
        band = band_of.get(path)
        allowed = {abs(dx), NATIVE_METRES.get(band, 2 * abs(dx))}
        if factor not in (1, 2) or metres not in allowed or fdy != factor * dy \
                or frx or fry:
            raise ProductError(f"{path}: pixel size {metres:g} x {abs(fdy):g}, expected "
                               + " or ".join(f"{m:g}" for m in sorted(allowed))
                               + f" (the {'band ' + band if band else 'mask'} on the "
                               f"{abs(dx):g} m grid of {base.path})")
        size = (-(-base.height // factor), -(-base.width // factor))
        if (fx0, fy0) != (x0, y0) or (info.height, info.width) != size \
                or info.georef.epsg != base.georef.epsg:
            raise ProductError(f"{path}: grid EPSG:{info.georef.epsg} corner ({fx0}, {fy0}) "
                               f"size {info.height} x {info.width}, expected EPSG:"
                               f"{base.georef.epsg} corner ({x0}, {y0}) size {size[0]} x "
                               f"{size[1]} (as {base.path} at {factor}x its pixel size)")
        products.factor[path] = factor
        if path in band_of:
            nodata = info.georef.nodata
            products.nodata[path] = THEIA_NODATA if nodata is None else nodata
    products.height, products.width = base.height, base.width
    products.georef = GeoRef(base.georef.transform, base.georef.epsg, None)
