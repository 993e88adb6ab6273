"""Dev-only: write small GeoTIFFs with GDAL (rasterio) as golden inputs for the reader.

Run once, commit the outputs in tests/data/geotiff/. Needs rasterio (not a runtime or
test dependency). GDAL decides the tags (tiling, interleave, PixelIsPoint, rotation,
nodata); tests/test_geotiff.py checks that sits_ref.geotiff reads the same pixels and
the geotransform / EPSG / nodata that GDAL reports, recorded here in expected.json.

It also checks the other direction once: a class map and a confidence raster written
by sits_ref.geotiff open in GDAL with the same georeferencing, colour table and values.
"""
import json
import os
import tempfile

import numpy as np
import rasterio
from rasterio.transform import Affine

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "geotiff")

CASES = {
    "tiled_pixel_interleave.tif": dict(
        count=3, dtype="int16", height=40, width=50, crs="EPSG:32631", nodata=-10000,
        transform=Affine(10, 0, 356040.5, 0, -10, 4835680.25),
        tiled=True, blockxsize=16, blockysize=16, interleave="pixel", compress="deflate"),
    "strips_band_interleave.tif": dict(
        count=2, dtype="uint16", height=33, width=21, crs="EPSG:4326",
        transform=Affine(0.0001, 0, 1.25, 0, -0.0001, 43.5),
        interleave="band", blockysize=5),
    "pixel_is_point.tif": dict(
        count=1, dtype="float32", height=12, width=9, crs="EPSG:32631", nodata=-1.5,
        transform=Affine(20, 0, 300000, 0, -20, 4900000), AREA_OR_POINT="Point"),
    "rotated.tif": dict(
        count=1, dtype="uint8", height=10, width=8, crs="EPSG:32631",
        transform=Affine(10, 2, 356000, 1, -10, 4835000)),
}


def make_inputs() -> dict:
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20180215)
    expected = {}
    for name, profile in CASES.items():
        profile = dict(profile, driver="GTiff")
        area_or_point = profile.pop("AREA_OR_POINT", None)
        info = np.iinfo(profile["dtype"]) if profile["dtype"] != "float32" else None
        shape = (profile["count"], profile["height"], profile["width"])
        data = (rng.integers(max(info.min, -3000), min(info.max, 6000), shape)
                if info else rng.normal(size=shape)).astype(profile["dtype"])
        path = os.path.join(OUT, name)
        tags = {"AREA_OR_POINT": area_or_point} if area_or_point else {}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if tags:
                dst.update_tags(**tags)
        with rasterio.open(path) as src:  # what GDAL makes of the file it wrote
            expected[name] = dict(transform=list(src.transform.to_gdal()),
                                  epsg=src.crs.to_epsg(), nodata=src.nodata,
                                  shape=list(shape), dtype=profile["dtype"])
        np.save(os.path.join(OUT, name.replace(".tif", ".npy")), data)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    return expected


def check_writer() -> None:
    from sits_ref.geotiff import GeoRef, create_geotiff, write_geotiff
    georef = GeoRef((356040.0, 10.0, 0.0, 4835680.0, 0.0, -10.0), 32631)
    classes = (np.arange(30 * 40).reshape(30, 40) % 4).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        write_geotiff(f"{tmp}/map.tif", classes, georef, nodata=0,
                      colormap={1: (230, 0, 77), 3: (0, 0, 255)},
                      metadata={"CLASS_1": "Built up"})
        with create_geotiff(f"{tmp}/conf.tif", 30, 40, np.float32, georef) as img:
            img[:] = classes / 4
        with rasterio.open(f"{tmp}/map.tif") as src:
            assert src.transform.to_gdal() == georef.transform, src.transform
            assert src.crs.to_epsg() == 32631 and src.nodata == 0
            assert src.colormap(1)[1] == (230, 0, 77, 255)
            assert src.colormap(1)[3] == (0, 0, 255, 255)
            assert src.tags()["CLASS_1"] == "Built up"
            assert np.array_equal(src.read(1), classes)
        with rasterio.open(f"{tmp}/conf.tif") as src:
            assert src.transform.to_gdal() == georef.transform
            assert np.array_equal(src.read(1), (classes / 4).astype(np.float32))
    print("GDAL reads sits_ref maps: georeferencing, colour table, class names, values OK")


if __name__ == "__main__":
    print(json.dumps(make_inputs(), indent=1))
    check_writer()
