"""Dev-only: count the bundled sample's labelled pixels per class with GDAL (rasterio).

Writes tests/data/sample_gdal_counts.json, the expected values of
``test_labelled_pixels_per_class_match_gdal`` in tests/test_sample.py. Needs rasterio
(which bundles GDAL) and pyshp; the test that reads the JSON needs neither.

What is counted mirrors ``sits_ref.samples.SampleBuilder.pixels`` for a split holding
every polygon of a file, but with GDAL doing the burning and nothing from sits_ref:

* the image grid (transform, size, nodata) is read with rasterio from the first image
  of data_sample/manifest.json;
* each polygon file (``train_polygons``, ``test_polygons``) is read with pyshp, records
  in file order; record ``i`` is burnt with value ``i + 1`` by one call of
  ``rasterio.features.rasterize`` (``all_touched=False``: GDAL's pixel-centre rule), so
  where polygons overlap the later record wins, as in sits_ref (``burn_ids``: "a later
  polygon overwrites an earlier one, as in GDAL");
* records without geometry are skipped, as sits_ref's reader skips them;
* a pixel counts for its winning record's class code (``class_field``) if it is valid,
  i.e. equal to the image nodata in no band of no date (sits_ref's ``read_bands``);
  ``burnt`` (all burnt pixels, valid or not) is written too.

    python tests/data/make_sample_gdal_counts.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import rasterio
import shapefile
from rasterio import features

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "data_sample" / "manifest.json"
OUT = Path(__file__).with_name("sample_gdal_counts.json")


def read_records(path, class_field):
    """(geometry, code) of every record with a geometry, in file order."""
    with shapefile.Reader(str(path)) as reader:
        return [(sr.shape.__geo_interface__, int(sr.record[class_field]))
                for sr in reader.iterShapeRecords() if sr.shape.points]


def valid_mask(images, height, width):
    """True where no band of no date equals the nodata value (or is NaN/inf)."""
    valid = np.ones((height, width), bool)
    for path in images:
        with rasterio.open(path) as src:
            data = src.read()
            if src.nodata is not None:
                valid &= ~(data == src.nodata).any(axis=0)
            if data.dtype.kind == "f":
                valid &= np.isfinite(data).all(axis=0)
    return valid


def main():
    doc = json.loads(MANIFEST.read_text())
    root = MANIFEST.parent
    images = [root / p for p in doc["images"]]
    codes = [int(c["code"]) for c in doc["classes"]]
    with rasterio.open(images[0]) as src:
        transform, height, width = src.transform, src.height, src.width
    valid = valid_mask(images, height, width)
    result = {
        "description": "labelled pixels per class code of the bundled sample, burnt by GDAL "
                       "(rasterio.features.rasterize, all_touched=False, later records "
                       "overwrite earlier ones); 'labelled' counts valid pixels only "
                       "(no nodata in any band of any date), 'burnt' all burnt pixels",
        "command": "python tests/data/make_sample_gdal_counts.py",
        "rasterio_version": rasterio.__version__,
        "gdal_version": rasterio.__gdal_version__,
        "grid": {"height": height, "width": width, "transform_gdal": list(transform.to_gdal())},
        "invalid_pixels": int((~valid).sum()),
    }
    for which in ("train", "test"):
        key = f"{which}_polygons"
        if not doc.get(key):
            continue
        records = read_records(root / doc[key], doc["class_field"])
        burn = features.rasterize(((g, i + 1) for i, (g, _) in enumerate(records)),
                                  out_shape=(height, width), transform=transform, fill=0,
                                  all_touched=False, dtype="int32")
        code_of = np.array([0] + [c for _, c in records])
        burnt_codes = code_of[burn[burn > 0]]
        valid_codes = code_of[burn[(burn > 0) & valid]]
        result[which] = {
            "polygon_file": doc[key],
            "records": len(records),
            "labelled": {str(c): int((valid_codes == c).sum()) for c in codes},
            "burnt": {str(c): int((burnt_codes == c).sum()) for c in codes},
        }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k]["labelled"] for k in ("train", "test") if k in result}))
    print(f"-> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
