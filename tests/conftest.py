"""Shared fixtures: a tiny georeferenced dataset written in a temporary folder."""
import json
import os

import numpy as np
import pytest
import shapefile

from sits_ref.geotiff import GeoRef, write_geotiff

UTM31N_WKT = ('PROJCS["WGS 84 / UTM zone 31N",GEOGCS["WGS 84",DATUM["WGS_1984",'
              'SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
              'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0],UNIT["degree",'
              '0.0174532925199433],AUTHORITY["EPSG","4326"]],PROJECTION["Transverse_Mercator"],'
              'PARAMETER["central_meridian",3],UNIT["metre",1],AUTHORITY["EPSG","32631"]]')
ORIGIN = (356040.0, 4835680.0)
TINY_GEOREF = GeoRef((ORIGIN[0], 10.0, 0.0, ORIGIN[1], 0.0, -10.0), 32631, -10000)


def square(col0, row0, size):
    """Exterior ring (clockwise, map coordinates) of a square of `size` pixels."""
    x0, y0 = ORIGIN[0] + 10 * col0, ORIGIN[1] - 10 * row0
    x1, y1 = x0 + 10 * size, y0 - 10 * size
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def write_shapefile(path, records, wkt=UTM31N_WKT, field="code"):
    """records: list of (list of rings, code)."""
    with shapefile.Writer(str(path), shapeType=shapefile.POLYGON) as w:
        w.field(field, "N", 4, 0)
        for rings, code in records:
            w.poly(rings)
            w.record(code)
    if wkt is not None:
        with open(os.path.splitext(str(path))[0] + ".prj", "w") as f:
            f.write(wkt)


@pytest.fixture
def tiny_dataset(tmp_path):
    """3 dates x 4 bands (B3, B4, B8, B11) on a 20 x 24 grid, 2 classes, 4 polygons.

    Class 1 (left half) is bright red, class 2 (right half) green (high B8).
    Returns the manifest path; tests may edit the manifest before loading.
    """
    rng = np.random.default_rng(0)
    images = []
    for t in range(3):
        cube = np.empty((4, 20, 24), np.int16)
        cube[:, :, :12] = np.array([800, 1200, 1500, 2500])[:, None, None]
        cube[:, :, 12:] = np.array([600, 400, 3500 + 300 * t, 1600])[:, None, None]
        cube += rng.integers(-50, 50, cube.shape).astype(np.int16)
        name = f"date{t}.tif"
        write_geotiff(tmp_path / name, cube, TINY_GEOREF, nodata=-10000)
        images.append(name)
    write_shapefile(tmp_path / "train.shp", [([square(1, 1, 4)], 1), ([square(2, 10, 5)], 1),
                                              ([square(14, 2, 4)], 2), ([square(15, 11, 6)], 2)])
    manifest = {"name": "tiny", "images": images, "dates": ["2018-02-15", "2018-03-15",
                                                             "2018-04-15"],
                "bands": ["B3", "B4", "B8", "B11"], "scale": 0.0001,
                "train_polygons": "train.shp", "class_field": "code",
                "classes": [{"code": 1, "name": "Built up", "color": "#e6004d"},
                            {"code": 2, "name": "Woodland", "color": "#00a600"}]}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def edit_manifest(path, **changes):
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))
