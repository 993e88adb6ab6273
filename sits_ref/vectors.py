"""Labelled polygons from ESRI shapefiles (pyshp) and GeoJSON (json), with their CRS.

Each polygon comes back as a :class:`LabelledPolygon`: a GeoJSON-like geometry dict
(``Polygon`` or ``MultiPolygon``, holes kept), its integer class code and a polygon id
(the record index in the file). The CRS is an EPSG code read from the shapefile's
``.prj`` (``AUTHORITY["EPSG", ...]`` or an ESRI ``WGS_1984_UTM_Zone_nnX`` name) or from
the GeoJSON ``crs`` member; a GeoJSON without one is EPSG:4326, as RFC 7946 says.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import shapefile


class VectorError(ValueError):
    """A polygon file is missing, malformed, or does not fit the dataset."""


@dataclass(frozen=True)
class LabelledPolygon:
    geometry: dict  # GeoJSON-like: {"type": "Polygon"|"MultiPolygon", "coordinates": ...}
    code: int
    fid: int


def epsg_from_wkt(wkt: str) -> int | None:
    """EPSG code of a WKT CRS (.prj), or None when it cannot be identified."""
    authorities = re.findall(r'AUTHORITY\s*\[\s*"EPSG"\s*,\s*"?(\d+)"?\s*\]', wkt, re.I)
    if authorities and wkt.lstrip().upper().startswith(("PROJCS", "GEOGCS")):
        return int(authorities[-1])  # the last one belongs to the outermost CRS
    utm = re.search(r'WGS[ _]?(?:19)?84[ _/]+UTM[ _]zone[ _](\d{1,2})([NS])', wkt, re.I)
    if utm:
        return (32600 if utm.group(2).upper() == "N" else 32700) + int(utm.group(1))
    if re.match(r'\s*GEOGCS\s*\[\s*"(GCS_)?WGS[ _]?(19)?84"', wkt, re.I):
        return 4326
    return None


def _epsg_from_geojson(doc: dict) -> int:
    name = (doc.get("crs") or {}).get("properties", {}).get("name")
    if name is None:
        return 4326
    match = re.search(r"EPSG:{1,2}(\d+)$", name) or re.search(r"CRS84$", name)
    if match is None:
        raise VectorError(f"unrecognised GeoJSON crs name {name!r}")
    return int(match.group(1)) if match.groups() else 4326


def _ring_area(ring) -> float:
    xy = np.asarray(ring, dtype=float)[:, :2]
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def is_degenerate(geometry: dict) -> bool:
    """True for a geometry without any exterior ring of 3+ vertices and non-zero area."""
    polys = geometry["coordinates"] if geometry["type"] == "MultiPolygon" \
        else [geometry["coordinates"]]
    return not any(p and len(p[0]) >= 3 and _ring_area(p[0]) != 0 for p in polys)


def _read_shapefile(path: str, class_field: str):
    try:
        reader = shapefile.Reader(path)
    except Exception as exc:
        raise VectorError(f"{path}: not a readable shapefile ({exc})") from None
    with reader:
        fields = [f[0] for f in reader.fields[1:]]
        if class_field not in fields:
            raise VectorError(f"{path}: no class field {class_field!r} "
                              f"(fields are {', '.join(fields) or 'none'})")
        records = [(sr.shape.__geo_interface__ if sr.shape.points else None,
                    sr.record[class_field]) for sr in reader.iterShapeRecords()]
    prj = os.path.splitext(path)[0] + ".prj"
    epsg = None
    if os.path.isfile(prj):
        with open(prj) as f:
            epsg = epsg_from_wkt(f.read())
    if epsg is None:
        raise VectorError(f"{path}: CRS unknown (missing or unrecognised {prj}); "
                          "write a .prj with an EPSG authority")
    return records, epsg


def _read_geojson(path: str, class_field: str):
    try:
        with open(path) as f:
            doc = json.load(f)
        features = doc["features"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VectorError(f"{path}: not a GeoJSON FeatureCollection ({exc})") from None
    records = []
    for i, feat in enumerate(features):
        props = feat.get("properties") or {}
        if class_field not in props:
            raise VectorError(f"{path}: feature {i} has no class field {class_field!r} "
                              f"(properties are {', '.join(props) or 'none'})")
        records.append((feat.get("geometry"), props[class_field]))
    try:
        return records, _epsg_from_geojson(doc)
    except VectorError as exc:
        raise VectorError(f"{path}: {exc}") from None


def read_polygons(path, class_field: str, class_codes=None):
    """Read labelled polygons from a ``.shp`` or ``.geojson``/``.json`` file.

    Args:
        path: polygon file.
        class_field: attribute holding the integer class code.
        class_codes: allowed codes; a polygon with another code is an error.

    Returns:
        (polygons, epsg): list of LabelledPolygon, and the file's EPSG code.

    Empty and degenerate polygons (no ring with 3+ vertices and non-zero area) and
    non-polygon geometries are skipped with one warning that counts them.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VectorError(f"{path}: file not found")
    reader = _read_shapefile if path.lower().endswith(".shp") else _read_geojson
    records, epsg = reader(path, class_field)
    allowed = None if class_codes is None else {int(c) for c in class_codes}
    polygons, skipped = [], 0
    for fid, (geometry, value) in enumerate(records):
        try:
            code = int(value)
        except (TypeError, ValueError):
            raise VectorError(f"{path}: record {fid}: class field {class_field!r} = "
                              f"{value!r} is not an integer code") from None
        if allowed is not None and code not in allowed:
            raise VectorError(f"{path}: record {fid}: unknown class code {code} "
                              f"(expected one of {sorted(allowed)})")
        if not geometry or geometry.get("type") not in ("Polygon", "MultiPolygon") \
                or is_degenerate(geometry):
            skipped += 1
            continue
        polygons.append(LabelledPolygon(geometry, code, fid))
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} empty, degenerate or non-polygon "
                      f"record(s) of {len(records)}", stacklevel=2)
    return polygons, epsg


def polygon_bounds(geometry: dict) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of a Polygon/MultiPolygon."""
    polys = geometry["coordinates"] if geometry["type"] == "MultiPolygon" \
        else [geometry["coordinates"]]
    xy = np.concatenate([np.asarray(r, float)[:, :2] for p in polys for r in p])
    return (*xy.min(axis=0), *xy.max(axis=0))
