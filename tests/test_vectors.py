"""Polygon reading: shapefile and GeoJSON, holes, multiparts, CRS, bad records."""
import json

import pytest

from conftest import UTM31N_WKT, square, write_shapefile
from sits_ref.vectors import VectorError, epsg_from_wkt, read_polygons

ESRI_UTM = ('PROJCS["WGS_1984_UTM_Zone_31N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",'
            'SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],'
            'UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
            'PARAMETER["Central_Meridian",3.0],UNIT["Meter",1.0]]')


def test_epsg_from_wkt_variants():
    assert epsg_from_wkt(UTM31N_WKT) == 32631
    assert epsg_from_wkt(ESRI_UTM) == 32631
    assert epsg_from_wkt(ESRI_UTM.replace("31N", "30S")) == 32730
    assert epsg_from_wkt('GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984"]]') == 4326
    assert epsg_from_wkt('PROJCS["Lambert_Conformal_Conic"]') is None


def test_shapefile_polygon_with_hole_and_multipart(tmp_path):
    outer, hole = square(0, 0, 10), square(3, 3, 2)[::-1]  # hole counter-clockwise
    write_shapefile(tmp_path / "p.shp", [([outer, hole], 3),
                                          ([square(20, 0, 2), square(30, 0, 2)], 7)])
    polys, epsg = read_polygons(tmp_path / "p.shp", "code", [3, 7])
    assert epsg == 32631
    assert [p.code for p in polys] == [3, 7] and [p.fid for p in polys] == [0, 1]
    assert polys[0].geometry["type"] == "Polygon"
    assert len(polys[0].geometry["coordinates"]) == 2  # exterior + hole
    assert polys[1].geometry["type"] == "MultiPolygon"
    assert len(polys[1].geometry["coordinates"]) == 2


def test_geojson_with_crs_member(tmp_path):
    doc = {"type": "FeatureCollection",
           "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32631"}},
           "features": [{"type": "Feature", "properties": {"cls": 5},
                         "geometry": {"type": "Polygon", "coordinates": [square(0, 0, 3)]}}]}
    (tmp_path / "p.geojson").write_text(json.dumps(doc))
    polys, epsg = read_polygons(tmp_path / "p.geojson", "cls")
    assert epsg == 32631 and polys[0].code == 5


def test_geojson_without_crs_is_wgs84(tmp_path):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": 1},
         "geometry": {"type": "Polygon", "coordinates": [[[1, 43], [1.1, 43], [1, 43.1], [1, 43]]]}}]}
    (tmp_path / "p.geojson").write_text(json.dumps(doc))
    assert read_polygons(tmp_path / "p.geojson", "code")[1] == 4326


def test_missing_class_field_names_the_fields(tmp_path):
    write_shapefile(tmp_path / "p.shp", [([square(0, 0, 3)], 1)], field="label")
    with pytest.raises(VectorError, match=r"p.shp: no class field 'code' \(fields are label\)"):
        read_polygons(tmp_path / "p.shp", "code")


def test_unknown_class_code(tmp_path):
    write_shapefile(tmp_path / "p.shp", [([square(0, 0, 3)], 1), ([square(5, 5, 3)], 4)])
    with pytest.raises(VectorError, match=r"record 1: unknown class code 4 \(expected one of \[1, 2\]\)"):
        read_polygons(tmp_path / "p.shp", "code", [1, 2])


def test_degenerate_polygons_are_skipped_with_a_count(tmp_path):
    x, y = square(0, 0, 1)[0]
    line = [(x, y), (x + 10, y), (x + 20, y), (x, y)]  # zero area
    write_shapefile(tmp_path / "p.shp", [([square(0, 0, 3)], 1), ([line], 1)])
    with pytest.warns(UserWarning, match="skipped 1 empty, degenerate"):
        polys, _ = read_polygons(tmp_path / "p.shp", "code")
    assert len(polys) == 1


def test_missing_prj_and_missing_file(tmp_path):
    write_shapefile(tmp_path / "p.shp", [([square(0, 0, 3)], 1)], wkt=None)
    with pytest.raises(VectorError, match="CRS unknown"):
        read_polygons(tmp_path / "p.shp", "code")
    with pytest.raises(VectorError, match="none.shp: file not found"):
        read_polygons(tmp_path / "none.shp", "code")
