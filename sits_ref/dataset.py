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
      "train_polygons": "train.shp",
      "test_polygons": "test.shp", # optional
      "class_field": "code",
      "classes": [{"code": 1, "name": "Built up", "color": "#e6004d"}, ...]
    }

Images are read as float32 arrays (T, C, H, W) of reflectance; features add the
spectral indices (:mod:`sits_ref.indices`). Pixels that are nodata, NaN or inf in any
band of any date are reported by a validity mask and set to 0 in the features.

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
from dataclasses import dataclass

import numpy as np

from .geotiff import GeoRef, GeoTiffError, read_info, read_window
from .indices import add_indices, feature_names
from .vectors import LabelledPolygon, VectorError, polygon_bounds, read_polygons


class DatasetError(ValueError):
    """A manifest or the files it names are not a usable dataset."""


@dataclass(frozen=True)
class ClassInfo:
    code: int  # 1..255; 0 is reserved for "no data / unlabelled" in maps
    name: str
    color: tuple  # (r, g, b), 0-255


REQUIRED = ("images", "dates", "bands", "train_polygons", "class_field", "classes")
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


class Dataset:
    """An image time series on one grid, with labelled polygons and a class table.

    Attributes:
        name, dates, bands, classes, class_field: as in the manifest.
        images: absolute image paths; ``stacked`` when one file holds all dates.
        height, width, georef: the common grid of all images.
        feature_names: bands then computable indices, e.g. the paper's 13 features.
    """

    def __init__(self, manifest_path):
        path = os.path.abspath(os.fspath(manifest_path))
        self.manifest_path = path
        try:
            with open(path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise DatasetError(f"{path}: manifest not found") from None
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable JSON manifest ({exc})") from None
        if not isinstance(doc, dict):
            raise DatasetError(f"{path}: not a manifest (expected a JSON object with "
                               f"fields {', '.join(REQUIRED)})")
        missing = [k for k in REQUIRED if k not in doc]
        if missing:
            raise DatasetError(f"{path}: missing field(s) {', '.join(missing)}")
        root = os.path.dirname(path)
        self.name = str(doc.get("name", os.path.basename(root)))
        self.images = [os.path.join(root, p) for p in _string_list(doc, "images", path)]
        self.dates = _parse_dates(_string_list(doc, "dates", path), path)
        self.bands = _string_list(doc, "bands", path)
        try:
            self.scale = float(doc.get("scale", 1.0))
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: scale {doc['scale']!r} is not a number") from None
        self.class_field = str(doc["class_field"])
        self.classes = _parse_classes(doc["classes"], path)
        self.polygon_files = {k: os.path.join(root, str(doc[f"{k}_polygons"]))
                              for k in ("train", "test") if doc.get(f"{k}_polygons")}
        self._polygons = {}
        self.stacked = len(self.images) == 1 and len(self.dates) > 1
        if not self.stacked and len(self.images) != len(self.dates):
            raise DatasetError(f"{path}: {len(self.images)} images for {len(self.dates)} "
                               "dates (expected one image per date, or one image "
                               "stacking all dates)")
        self._check_grid()
        self.feature_names = feature_names(self.bands)

    def _check_grid(self) -> None:
        """All images share band count, shape and grid; read_info also refuses a file
        whose strips/tiles end beyond its size (truncated), from the header alone."""
        infos = [read_info(p) for p in self.images]
        first = infos[0]
        expected = len(self.bands) * (len(self.dates) if self.stacked else 1)
        for info in infos:
            if info.count != expected:
                raise DatasetError(f"{info.path}: {info.count} bands, expected {expected} "
                                   f"({len(self.bands)} bands"
                                   + (f" x {len(self.dates)} dates)" if self.stacked else ")"))
            if (info.height, info.width) != (first.height, first.width):
                raise DatasetError(f"{info.path}: shape {info.height}x{info.width} differs "
                                   f"from {first.path}: {first.height}x{first.width}")
            if not info.georef.same_grid(first.georef):
                raise DatasetError(
                    f"{info.path}: grid EPSG:{info.georef.epsg} {info.georef.transform} "
                    f"differs from {first.path}: EPSG:{first.georef.epsg} "
                    f"{first.georef.transform}")
        self.height, self.width, self.georef = first.height, first.width, first.georef

    @property
    def class_codes(self) -> list[int]:
        return [c.code for c in self.classes]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def read_bands(self, window=None) -> tuple[np.ndarray, np.ndarray]:
        """Reflectances (T, C, h, w) float32 and validity mask (h, w) bool.

        ``window`` is (row0, col0, height, width); None reads the whole grid. A pixel is
        invalid if it equals the GeoTIFF nodata value, or is NaN or inf, in any band of
        any date; invalid pixels are 0 in the reflectances.
        """
        raw = [read_window(p, window) for p in self.images]
        cube = raw[0].reshape(len(self.dates), len(self.bands), *raw[0].shape[1:]) \
            if self.stacked else np.stack(raw)
        invalid = np.zeros(cube.shape[2:], bool)
        if self.georef.nodata is not None:
            invalid |= (cube == self.georef.nodata).any(axis=(0, 1))
        if cube.dtype.kind == "f":
            invalid |= ~np.isfinite(cube).all(axis=(0, 1))
        bands = cube.astype(np.float32) * np.float32(self.scale)
        bands[:, :, invalid] = 0
        return bands, ~invalid

    def read_features(self, window=None) -> tuple[np.ndarray, np.ndarray]:
        """Features (T, F, h, w) float32 (bands + indices) and validity mask (h, w)."""
        bands, valid = self.read_bands(window)
        return add_indices(bands, self.bands, axis=1), valid

    def check(self) -> None:
        """Read what loading leaves for later, so bad inputs show before any training.

        Reads the polygon files (their errors raise DatasetError now) and scans the
        float images block by block, warning once per file that holds NaN or inf
        values (read_bands treats them as nodata). Integer images cannot hold either.
        """
        for which in self.polygon_files:
            self.polygons(which)
        for path in self.images:
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
                              "treated as nodata", stacklevel=2)

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
    """Open a dataset manifest; errors are :class:`DatasetError` naming the file."""
    try:
        return Dataset(manifest_path)
    except GeoTiffError as exc:
        raise DatasetError(str(exc)) from None


__all__ = ["ClassInfo", "Dataset", "DatasetError", "GeoRef", "load_dataset"]
