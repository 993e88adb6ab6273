"""A dataset described by a JSON manifest: image time series, polygons and classes.

Every step of sits_ref reads data through a manifest, so any Sentinel-2 (or other)
time series can be benchmarked by writing one. Paths are relative to the manifest::

    {
      "name": "my site",
      "images": ["S2_20180215.tif", "S2_20180315.tif", ...],  # one GeoTIFF per date,
                                   # or ["stack.tif"]: one GeoTIFF, bands date-major
      "dates": ["2018-02-15", "2018-03-15", ...],
      "bands": ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"],
      "scale": 0.0001,             # digital number -> reflectance (optional, default 1)
      "offset": 0,                 # added to digital numbers before scaling (optional;
                                   # -1000 for ESA L2A of processing baseline >= 04.00)
      "train_polygons": "train.shp",
      "test_polygons": "test.shp", # optional
      "class_field": "code",
      "classes": [{"code": 1, "name": "Built up", "color": "#e6004d"}, ...]
    }

or, instead of images, dates and bands, a folder of Sentinel-2 products (Theia L3A,
Theia L2A or per-band GeoTIFFs, see :mod:`sits_ref.products`; bands default to the
paper's 10, scale to 1/10000)::

    {"products": "S2_L3A_T31TCJ/", "train_polygons": "train.shp", "class_field": "code",
     "classes": [...]}

Optional ``"date_grid": {"start": "2018-02-01", "end": "2018-12-31", "step_days": 10}``
puts the series on a regular grid of dates (several tiles can share one). Polygons and
classes are needed to train; a folder of products (or a manifest without polygons) is
enough to apply a trained model.

Images are read as float32 arrays (T, C, H, W) of reflectance; features add the
spectral indices (:mod:`sits_ref.indices`). An observation (pixel, date) that a mask
flags or that is nodata, NaN or inf in any band is invalid and is filled by linear
interpolation in time (:mod:`sits_ref.gapfill`); only pixels without any valid
observation are reported invalid by the validity mask, and 0 in the features.

Bad inputs fail with a one-line :class:`DatasetError` that starts with the offending
file and says what was expected; :meth:`Dataset.check` also reads the polygon files and
scans float images for NaN/inf, so these problems show before any training starts.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .gapfill import day_numbers, fill_gaps, regular_dates
from .geotiff import GeoRef, GeoTiffError, read_info, read_window
from .indices import PAPER_BANDS, add_indices, feature_names
from .products import (MASK_MEANING, READ_THREADS, SCALE, ProductError, find_products,
                       valid_values)
from .vectors import LabelledPolygon, VectorError, polygon_bounds, read_polygons


class DatasetError(ValueError):
    """A manifest or the files it names are not a usable dataset."""


@dataclass(frozen=True)
class ClassInfo:
    code: int  # 1..255; 0 is reserved for "no data / unlabelled" in maps
    name: str
    color: tuple  # (r, g, b), 0-255


IMAGE_FIELDS = ("images", "dates", "bands")   # or "products"
TRAINING_FIELDS = ("class_field", "classes")  # with "train_polygons"
CHECK_BYTES = 256 * 2**20  # memory bound of one block read by Dataset.check


def _parse_color(text, where: str) -> tuple:
    if isinstance(text, str) and len(text) == 7 and text.startswith("#"):
        try:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
    raise DatasetError(f"{where}: color {text!r} is not of the form '#rrggbb'")


def _string_list(doc: dict, key: str, where: str) -> list[str]:
    """``doc[key]``, checked to be a non-empty list of strings (paths or names)."""
    value = doc[key]
    if not isinstance(value, list) or not value or \
            not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{where}: {key!r} must be a non-empty list of strings, "
                           f"got {json.dumps(value)[:60]}")
    return value


def _parse_dates(dates: list[str], where: str) -> list[str]:
    """Check that dates are real ``YYYY-MM-DD`` calendar dates, strictly increasing."""
    parsed = []
    for i, text in enumerate(dates):
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                raise ValueError
            parsed.append(datetime.date.fromisoformat(text))
        except ValueError:
            raise DatasetError(f"{where}: dates[{i}] {text!r} is not a calendar date "
                               "(expected YYYY-MM-DD)") from None
        if i and parsed[i] <= parsed[i - 1]:
            raise DatasetError(f"{where}: dates must be strictly increasing: dates[{i}] "
                               f"{text} is not after dates[{i - 1}] {dates[i - 1]}")
    return dates


def _parse_classes(entries, where: str) -> list[ClassInfo]:
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{where}: 'classes' must be a non-empty list")
    classes = []
    for i, c in enumerate(entries):
        try:
            code, name = int(c["code"]), str(c["name"])
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{where}: classes[{i}] needs an integer 'code' and a "
                               "'name'") from None
        if not 1 <= code <= 255:
            raise DatasetError(f"{where}: classes[{i}] code {code} outside 1..255")
        classes.append(ClassInfo(code, name, _parse_color(c.get("color", "#808080"),
                                                          f"{where}: classes[{i}]")))
    codes = [c.code for c in classes]
    if len(set(codes)) != len(codes):
        raise DatasetError(f"{where}: duplicate class codes in {codes}")
    return classes


def _read_manifest(path: str) -> dict:
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"{path}: manifest not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{path}: not a manifest (expected a JSON object with "
                           f"fields {', '.join(IMAGE_FIELDS)} or products)")
    return doc


def _number(doc: dict, key: str, default: float, path: str) -> float:
    try:
        return float(doc.get(key, default))
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {key} {doc[key]!r} is not a number") from None


def _image_source(doc: dict, root: str, path: str):
    """(ImageStack or Products, scale) of a manifest."""
    scale = _number(doc, "scale", SCALE if "products" in doc else 1.0, path)
    bands = _string_list(doc, "bands", path) if "bands" in doc else None
    if "products" in doc:
        try:
            return find_products(os.path.join(root, str(doc["products"])),
                                 bands or PAPER_BANDS), scale
        except ProductError as exc:
            raise DatasetError(str(exc)) from None
    missing = [k for k in IMAGE_FIELDS if k not in doc]
    if missing:
        raise DatasetError(f"{path}: missing field(s) {', '.join(missing)} (or give "
                           "'products': a folder of Sentinel-2 products)")
    images = [os.path.join(root, p) for p in _string_list(doc, "images", path)]
    dates = _parse_dates(_string_list(doc, "dates", path), path)
    if not (len(images) == 1 or len(images) == len(dates)):
        raise DatasetError(f"{path}: {len(images)} images for {len(dates)} dates (expected "
                           "one image per date, or one image stacking all dates)")
    return ImageStack(images, dates, bands), scale


def _date_grid(grid, path: str) -> list[str]:
    """The manifest's regular ``date_grid`` {start, end, step_days} as dates."""
    try:
        dates = regular_dates(_parse_dates([grid["start"]], path)[0],
                              _parse_dates([grid["end"]], path)[0], int(grid["step_days"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: date_grid {json.dumps(grid)} must be {{\"start\": "
                           f"YYYY-MM-DD, \"end\": YYYY-MM-DD, \"step_days\": n >= 1}} "
                           f"({exc})") from None
    return dates


class ImageStack:
    """The manifest's images: one GeoTIFF per date, or one GeoTIFF stacking all dates
    (bands date-major). Same reading contract as :class:`sits_ref.products.Products`:
    dates, bands, height, width, georef and ``read(window)``."""

    def __init__(self, images, dates, bands):
        self.images, self.dates, self.bands = images, dates, bands
        self.stacked = len(images) == 1 and len(dates) > 1
        infos = [read_info(p) for p in images]
        first = infos[0]
        expected = len(bands) * (len(dates) if self.stacked else 1)
        for info in infos:   # read_info also refuses a truncated file, from its header
            if info.count != expected:
                raise DatasetError(f"{info.path}: {info.count} bands, expected {expected} "
                                   f"({len(bands)} bands"
                                   + (f" x {len(dates)} dates)" if self.stacked else ")"))
            if (info.height, info.width) != (first.height, first.width):
                raise DatasetError(f"{info.path}: shape {info.height}x{info.width} differs "
                                   f"from {first.path}: {first.height}x{first.width}")
            if not info.georef.same_grid(first.georef):
                raise DatasetError(
                    f"{info.path}: grid EPSG:{info.georef.epsg} {info.georef.transform} "
                    f"differs from {first.path}: EPSG:{first.georef.epsg} "
                    f"{first.georef.transform}")
        self.height, self.width, self.georef = first.height, first.width, first.georef

    def read(self, window=None):
        """(values (T, C, h, w) in the files' type, valid (T, h, w) bool): an
        observation is invalid where a band holds the nodata value, NaN or inf."""
        with ThreadPoolExecutor(READ_THREADS) as pool:        # decoding frees the GIL
            raw = list(pool.map(lambda path: read_window(path, window), self.images))
        cube = raw[0].reshape(len(self.dates), len(self.bands), *raw[0].shape[1:]) \
            if self.stacked else np.stack(raw)
        valid = valid_values(cube, self.georef.nodata).all(axis=1)
        return cube, valid


class Dataset:
    """An image time series on one grid, with labelled polygons and a class table.

    Attributes:
        name, bands, classes, class_field: as in the manifest (classes may be empty
            when no polygons are given).
        source: an :class:`ImageStack` or :class:`sits_ref.products.Products`.
        observation_dates: the dates of the images; dates: those of the series read
            (the observation dates, or the manifest's ``date_grid``).
        height, width, georef: the common grid of all images.
        feature_names: bands then computable indices, e.g. the paper's 13 features.
    """

    def __init__(self, manifest_path):
        path = os.path.abspath(os.fspath(manifest_path))
        self.manifest_path = path
        if os.path.isdir(path):                      # a folder of products alone
            doc, root = {"products": "."}, path
        else:
            doc, root = _read_manifest(path), os.path.dirname(path)
        self.name = str(doc.get("name", os.path.basename(root)))
        self.source, self.scale = _image_source(doc, root, path)
        self.offset = _number(doc, "offset", 0.0, path)
        self.observation_dates, self.bands = self.source.dates, self.source.bands
        self.dates = _date_grid(doc["date_grid"], path) if "date_grid" in doc \
            else self.observation_dates
        self.polygon_files = {k: os.path.join(root, str(doc[f"{k}_polygons"]))
                              for k in ("train", "test") if doc.get(f"{k}_polygons")}
        missing = [k for k in TRAINING_FIELDS if k not in doc]
        if self.polygon_files and missing:
            raise DatasetError(f"{path}: polygons given but missing field(s) "
                               f"{', '.join(missing)}")
        self.class_field = str(doc.get("class_field", ""))
        self.classes = _parse_classes(doc["classes"], path) if "classes" in doc else []
        self._polygons = {}
        self.height, self.width = self.source.height, self.source.width
        self.georef = self.source.georef
        self.feature_names = feature_names(self.bands)

    def set_dates(self, dates) -> None:
        """Read the series on other ``dates`` ('YYYY-MM-DD', increasing), gap-filled
        from the observations (e.g. the dates a trained model expects)."""
        self.dates = _parse_dates(list(dates), self.manifest_path)

    @property
    def class_codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def read_bands(self, window=None) -> tuple[np.ndarray, np.ndarray]:
        """Reflectances (D, C, h, w) float32 on :attr:`dates` and validity (h, w) bool.

        ``window`` is (row0, col0, height, width); None reads the whole grid. Invalid
        observations (masked, nodata, NaN, inf) are gap-filled in time; a pixel is
        invalid, and 0, only when none of its observations is valid.
        """
        return self.bands_from_raw(*self.read_raw(window))

    def read_raw(self, window=None) -> tuple[np.ndarray, np.ndarray]:
        """The observations as stored, (T, C, h, w) in the files' type (int16 digital
        numbers for Sentinel-2: 2 bytes a value), and their validity (T, h, w) bool.
        Whole-scene inference keeps a row band so and converts it block by block
        (:meth:`bands_from_raw`)."""
        return self.source.read(window)

    def bands_from_raw(self, values, valid) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`read_bands` of observations from :meth:`read_raw`, or of any window
        cut from them (the conversion is per pixel)."""
        values = values.astype(np.float32)                    # our own copy
        if self.offset:
            values += np.float32(self.offset)
        values *= np.float32(self.scale)
        return fill_gaps(values, valid, day_numbers(self.observation_dates),
                         day_numbers(self.dates))

    def read_features(self, window=None) -> tuple[np.ndarray, np.ndarray]:
        """Features (T, F, h, w) float32 (bands + indices) and validity mask (h, w)."""
        bands, valid = self.read_bands(window)
        return add_indices(bands, self.bands, axis=1), valid

    def check(self) -> None:
        """Read what loading leaves for later, so bad inputs show before any training.

        Reads the polygon files (their errors raise DatasetError now) and scans the
        float images of a manifest block by block, warning once per file that holds
        NaN or inf values (read_bands treats them as nodata). Integer images cannot
        hold either; products are checked when they are found.
        """
        for which in self.polygon_files:
            self.polygons(which)
        for path in getattr(self.source, "images", []):
            info = read_info(path)
            if info.dtype.kind != "f":
                continue
            rows = max(1, CHECK_BYTES // (info.width * info.count * info.dtype.itemsize))
            bad = 0
            for r0 in range(0, info.height, rows):
                block = read_window(path, (r0, 0, min(rows, info.height - r0), info.width))
                bad += int((~np.isfinite(block)).any(axis=0).sum())
            if bad:
                share = 100 * bad / (info.height * info.width)
                warnings.warn(f"{path}: {bad} pixel(s) ({share:.2f} %) hold NaN or inf; "
                              "treated as nodata (gap-filled in time)", stacklevel=2)

    def has_polygons(self, which: str) -> bool:
        return which in self.polygon_files

    def polygons(self, which: str = "train") -> list[LabelledPolygon]:
        """The ``"train"`` or ``"test"`` polygons, checked against the image.

        Raises DatasetError when the file is missing from the manifest, its CRS differs
        from the image's, or no polygon overlaps the image. Polygons wholly outside the
        image are skipped with a counted warning, and a manifest class without any
        training polygon is warned about. Each file is read (and warned about) once.
        """
        if which not in self.polygon_files:
            raise DatasetError(f"{self.manifest_path}: no {which}_polygons in manifest")
        if which not in self._polygons:
            self._polygons[which] = self._read_polygons(which)
        return list(self._polygons[which])

    def _read_polygons(self, which: str) -> list[LabelledPolygon]:
        path = self.polygon_files[which]
        try:
            polygons, epsg = read_polygons(path, self.class_field, self.class_codes)
        except VectorError as exc:
            raise DatasetError(str(exc)) from None
        if epsg != self.georef.epsg:
            raise DatasetError(f"{path}: polygons are in EPSG:{epsg} but the images are "
                               f"in EPSG:{self.georef.epsg}; reproject the polygons")
        inside = [p for p in polygons if self._overlaps(polygon_bounds(p.geometry))]
        if not inside:
            raise DatasetError(f"{path}: none of the {len(polygons)} polygons overlaps "
                               f"the image extent {self.bounds}")
        if len(inside) < len(polygons):
            warnings.warn(f"{path}: skipped {len(polygons) - len(inside)} polygon(s) wholly "
                          "outside the image", stacklevel=3)
        if which == "train":
            present = {p.code for p in inside}
            for c in self.classes:
                if c.code not in present:
                    warnings.warn(f"{path}: no polygon for class {c.code} {c.name!r} of "
                                  f"{os.path.basename(self.manifest_path)}: no model can "
                                  "learn it; macro-F1 means leave it out wherever it has no "
                                  "reference pixel", stacklevel=3)
        return inside

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the grid, for a north-up image."""
        x0, dx, _, y0, _, dy = self.georef.transform
        xs, ys = (x0, x0 + dx * self.width), (y0, y0 + dy * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    def _overlaps(self, b) -> bool:
        xmin, ymin, xmax, ymax = self.bounds
        return b[0] < xmax and b[2] > xmin and b[1] < ymax and b[3] > ymin


def load_dataset(manifest_path) -> Dataset:
    """Open a dataset manifest, or a folder of products; errors are
    :class:`DatasetError` naming the file."""
    try:
        return Dataset(manifest_path)
    except GeoTiffError as exc:
        raise DatasetError(str(exc)) from None


def valid_shares(dataset: Dataset) -> tuple[np.ndarray, int]:
    """Share of valid observations per observation date (T,) and the number of pixels
    never valid, read block by block (memory bounded by CHECK_BYTES)."""
    source = dataset.source
    per_row = source.width * len(source.dates) * (len(source.bands) + 1) * 4
    rows = max(1, CHECK_BYTES // per_row)
    counts, never = np.zeros(len(source.dates), np.int64), 0
    for r0 in range(0, source.height, rows):
        _, valid = source.read((r0, 0, min(rows, source.height - r0), source.width))
        counts += valid.sum(axis=(1, 2))
        never += int((~valid.any(axis=0)).sum())
    return counts / (source.height * source.width), never


def describe(dataset: Dataset) -> str:
    """What a dataset holds: tile, grid, bands, masks, dates and valid observations."""
    src, ref = dataset.source, dataset.georef
    x0, dx, _, y0, _, dy = ref.transform
    layout = getattr(src, "layout", "stacked images" if getattr(src, "stacked", 0)
                     else "one image per date")
    lines = [f"dataset  {dataset.name} ({dataset.manifest_path})",
             f"source   {layout}" + (f", tile {src.tile}" if getattr(src, "tile", None) else ""),
             f"grid     {dataset.height} x {dataset.width} px, {abs(dx):g} x {abs(dy):g} "
             f"(CRS units), EPSG:{ref.epsg}, upper-left corner ({x0:.1f}, {y0:.1f})"]
    factor = getattr(src, "factor", {})
    coarse = [b for b in dataset.bands if factor.get(src.files[0][b], 1) > 1] \
        if factor else []
    lines.append(f"bands    {' '.join(dataset.bands)} (scale {dataset.scale:g})"
                 + (f"; resampled to {abs(dx):g} m by nearest neighbour: {' '.join(coarse)}"
                    if coarse else ""))
    masks = [MASK_MEANING[k] for k in sorted({m.kind for ms in getattr(src, "masks", [])
                                               for m in ms})]
    lines.append(f"masks    {', '.join(masks) if masks else 'none (nodata value, NaN, inf only)'}")
    shares, never = valid_shares(dataset)
    lines.append(f"dates    {len(src.dates)} observations, valid share per date:")
    lines += [f"         {d}  {100 * v:5.1f} %" for d, v in zip(src.dates, shares)]
    lines.append(f"never valid: {never} px ({100 * never / (dataset.height * dataset.width):.2f}"
                 " %), left out and nodata in maps; other gaps are filled in time")
    if dataset.dates != src.dates:
        lines.append(f"date grid {dataset.dates[0]} .. {dataset.dates[-1]}, "
                     f"{len(dataset.dates)} dates")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m sits_ref.dataset describe MANIFEST_OR_FOLDER``"""
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog="python -m sits_ref.dataset",
                                     description="Describe a dataset manifest or a folder "
                                                 "of Sentinel-2 products.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("describe", help="tile, grid, bands, masks, dates, valid observations") \
        .add_argument("path", help="manifest JSON or product folder")
    args = parser.parse_args(argv)
    try:
        print(describe(load_dataset(args.path)))
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


__all__ = ["ClassInfo", "Dataset", "DatasetError", "GeoRef", "load_dataset"]

if __name__ == "__main__":
    raise SystemExit(main())
