"""Labelled polygons from ESRI shapefiles (pyshp) and GeoJSON (json), with their CRS.

Each polygon comes back as a :class:`LabelledPolygon`: a GeoJSON-like geometry dict
(``Polygon`` or ``MultiPolygon``, holes kept), its integer class code and a polygon id
(the record index in the file). The CRS is an EPSG code read from the shapefile's
``.prj`` (``AUTHORITY["EPSG", ...]`` or an ESRI ``WGS_1984_UTM_Zone_nnX`` name) or from
the GeoJSON ``crs`` member; a GeoJSON without one is EPSG:4326, as RFC 7946 says.

Every problem is a one-line :class:`VectorError` that starts with the file's path: a
missing ``.dbf``, an unreadable file, an unknown CRS, a GeoJSON ring that is not closed,
or projected coordinates in a GeoJSON without ``crs`` (which would silently be read as
lon/lat and miss the image).
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
    """EPSG code of a GeoJSON: its ``crs`` member as GDAL and QGIS write it
    (``{"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}}``), or
    4326 without one."""
    if "crs" not in doc:
        return 4326
    crs = doc["crs"]
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) else None
    match = isinstance(name, str) and (re.search(r"EPSG:{1,2}(\d+)$", name)
                                       or re.search(r"CRS84$", name))
    if not match:
        raise VectorError(f"unrecognised GeoJSON crs {json.dumps(crs)} (expected "
                          '{"type": "name", "properties": {"name": "EPSG:nnnn"}})')
    return int(match.group(1)) if match.groups() else 4326


def polygon_parts(geometry: dict) -> list:
    """The polygons of a GeoJSON Polygon / MultiPolygon, each a list of rings."""
    coords = geometry.get("coordinates")
    return coords if geometry["type"] == "MultiPolygon" else [coords]


def _ring_area(ring) -> float:
    xy = np.asarray(ring, dtype=float)[:, :2]
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def is_degenerate(geometry: dict) -> bool:
    """True for a geometry without any exterior ring of 3+ vertices and non-zero area."""
    return not any(p and len(p[0]) >= 3 and _ring_area(p[0]) != 0
                   for p in polygon_parts(geometry))


def _read_shapefile(path: str, class_field: str):
    base = os.path.splitext(path)[0]
    if not any(os.path.isfile(base + ext) for ext in (".dbf", ".DBF")):
        raise VectorError(f"{path}: shapefile is missing its .dbf (attributes) file")
    try:
        with shapefile.Reader(path) as reader:
            fields = [f[0] for f in reader.fields[1:]]
            if class_field not in fields:
                raise VectorError(f"{path}: no class field {class_field!r} "
                                  f"(fields are {', '.join(fields) or 'none'})")
            records = [(sr.shape.__geo_interface__ if sr.shape.points else None,
                        sr.record[class_field]) for sr in reader.iterShapeRecords()]
    except VectorError:
        raise
    except Exception as exc:  # pyshp and struct raise several types for corrupt files
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise VectorError(f"{path}: not a readable shapefile ({reason})") from None
    prj = base + ".prj"
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
    try:
        epsg = _epsg_from_geojson(doc)
    except VectorError as exc:
        raise VectorError(f"{path}: {exc}") from None
    records = []
    for i, feat in enumerate(features):
        if not isinstance(feat, dict):
            raise VectorError(f"{path}: feature {i} is not a GeoJSON Feature object")
        props = feat.get("properties") or {}
        if class_field not in props:
            raise VectorError(f"{path}: feature {i} has no class field {class_field!r} "
                              f"(properties are {', '.join(props) or 'none'})")
        geometry = feat.get("geometry")
        if isinstance(geometry, dict) and geometry.get("type") in ("Polygon", "MultiPolygon"):
            try:
                rings = _ring_arrays(geometry)
            except VectorError as exc:
                raise VectorError(f"{path}: feature {i}: {exc}") from None
            if "crs" not in doc:
                _check_lon_lat(path, rings)
        records.append((geometry, props[class_field]))
    return records, epsg


def _ring_arrays(geometry: dict) -> list[np.ndarray]:
    """Rings of a GeoJSON Polygon/MultiPolygon as (n, 2+) arrays, checked: malformed
    coordinates and open rings (GeoJSON rings repeat their first vertex; an open one
    is the sign of a hand-edited or cut file) raise VectorError."""
    polys = polygon_parts(geometry)
    try:
        labelled = [(f"ring {k}" if geometry["type"] == "Polygon" else
                     f"polygon {j} ring {k}", np.asarray(ring, float))
                    for j, poly in enumerate(polys) for k, ring in enumerate(poly)]
        well_formed = all(r.size == 0 or (r.ndim == 2 and r.shape[1] >= 2)
                          for _, r in labelled)
    except (TypeError, ValueError):
        well_formed = False
    if not well_formed:
        raise VectorError(f"malformed {geometry['type']} coordinates (expected lists of "
                          "rings of [x, y] positions)")
    for label, ring in labelled:
        if ring.size and not np.array_equal(ring[0], ring[-1]):
            first, last = (tuple(float(v) for v in p[:2]) for p in (ring[0], ring[-1]))
            raise VectorError(f"{label} is not closed (first vertex {first} != last "
                              f"{last}); GeoJSON rings must repeat the first vertex")
    return [ring for _, ring in labelled if ring.size]


def _check_lon_lat(path: str, rings) -> None:
    """A GeoJSON without ``crs`` is lon/lat (RFC 7946); projected coordinates in one,
    a common export mistake, are refused rather than silently missing the image."""
    for ring in rings:
        outside = (np.abs(ring[:, 0]) > 180) | (np.abs(ring[:, 1]) > 90)
        if outside.any():
            x, y = ring[np.argmax(outside), :2]
            raise VectorError(
                f"{path}: no 'crs' member, so coordinates are read as lon/lat (RFC 7946), "
                f"but x={float(x)}, y={float(y)} cannot be lon/lat; add a crs member "
                "(e.g. EPSG:32631) or reproject")


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
    xy = np.concatenate([np.asarray(r, float)[:, :2] for p in polygon_parts(geometry)
                         for r in p])
    return (*xy.min(axis=0), *xy.max(axis=0))
