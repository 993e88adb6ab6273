"""Small Sentinel-2 product folders in the three layouts that sits_ref.products reads.

Values are real when the Theia L3A Bouconne crop is at hand (``../shared/real/bouconne``
next to the repository, or the path in ``SITS_REF_BOUCONNE``): 7 dates x 10 bands of
2018 over tile 31TCJ, of which a small window is used. Otherwise a synthetic cube of the
same shape and value range stands in (so CI, without that file, still runs every test).
Masks, clouds, no-data strips and saturated pixels are synthetic, at known places.

``write_products(folder, layout)`` writes the folder and returns what a correct reader
must give on the 10 m grid: values (T, C, H, W) int16 digital numbers (20 m bands
brought to 10 m by nearest neighbour, i.e. each 20 m value on its 2 x 2 block) and the
validity of each observation (T, H, W).
"""
import os

import numpy as np
import tifffile

from sits_ref.geotiff import GeoRef, write_geotiff

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOUCONNE = os.environ.get("SITS_REF_BOUCONNE", os.path.join(
    ROOT, "..", "shared", "real", "bouconne", "2018_3A_Theia_Bouconne.tif"))
DATES = ["2018-04-29", "2018-05-13", "2018-07-08", "2018-08-15", "2018-09-15",
         "2018-10-15", "2018-11-15"]
BANDS = ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
TWENTY = ("B5", "B6", "B7", "B8A", "B11", "B12")
WINDOW = (100, 60, 30, 37)        # rows, cols of the crop: odd width, 20 m grid 15 x 19
# the crop's grid: the Bouconne image's corner (356040, 4835680) moved to WINDOW
GEOREF = GeoRef((356040.0 + 10 * WINDOW[1], 10.0, 0.0, 4835680.0 - 10 * WINDOW[0], 0.0, -10.0),
                32631)
NODATA = -10000


def source_cube():
    """(T, C, H, W) int16 digital numbers, and whether they are real."""
    r0, c0, h, w = WINDOW
    if os.path.exists(BOUCONNE):
        pixels = tifffile.imread(BOUCONNE)[r0:r0 + h, c0:c0 + w]         # (h, w, 70)
        return pixels.reshape(h, w, 7, 10).transpose(2, 3, 0, 1).copy(), True
    rng = np.random.default_rng(2018)
    base = rng.uniform(200, 3000, (1, 10, 1, 1)) * rng.uniform(0.6, 1.4, (7, 1, 1, 1))
    texture = rng.normal(0, 150, (7, 10, h, w))
    return np.clip(base + texture, 18, 5886).astype(np.int16), False


def to_20m(band):
    """(H, W) -> (ceil(H/2), ceil(W/2)): mean of each 2 x 2 block (edge rows repeated)."""
    h, w = band.shape
    padded = np.pad(band.astype(np.float64), ((0, h % 2), (0, w % 2)), mode="edge")
    return np.round(padded.reshape(h // 2 + h % 2, 2, -1, 2).mean(axis=(1, 3))).astype(np.int16)


def to_10m(band, shape):
    return band.repeat(2, axis=0).repeat(2, axis=1)[:shape[0], :shape[1]]


def synthetic_masks(t, h, w):
    """Per date: cloud, outside swath (no data), saturated: (T, H, W) bool each.
    Date 0 has a 4-column no-data strip on the left (whole 20 m pixels); every date
    a cloud disk moving right; the 2 x 2 block at rows 0-1, cols 30-31 is cloudy on
    every date (never valid); date 2 (or the last) has a saturated pixel at (20, 5)."""
    rows, cols = np.mgrid[:h, :w]
    cloud = np.stack([(rows - 15) ** 2 + (cols - 4 - 5 * i) ** 2 <= 16 for i in range(t)])
    cloud[:, 0:2, 30:32] = True
    edge = np.zeros((t, h, w), bool)
    edge[0, :, :4] = True
    saturated = np.zeros((t, h, w), bool)
    saturated[min(2, t - 1), 20, 5] = True
    return cloud, edge, saturated


def write_products(folder, layout, cube=None):
    """Write ``layout`` ("theia_l3a", "theia_l2a" or "per_band") under ``folder``;
    returns (values (T, C, H, W) int16 at 10 m, valid (T, H, W) bool, dates)."""
    cube = source_cube()[0] if cube is None else cube
    t, c, h, w = cube.shape
    cloud, edge, saturated = synthetic_masks(t, h, w)
    if layout == "per_band":        # SCL is a 20 m mask: a cloud covers whole 2 x 2 blocks
        cloud = np.stack([to_10m(to_20m(m.astype(np.int16)) > 0, (h, w)) for m in cloud])
    twenty = [i for i, b in enumerate(BANDS) if b in TWENTY]
    expected = cube.copy()
    expected[:, twenty] = [[to_10m(to_20m(cube[d, i]), (h, w)) for i in twenty]
                           for d in range(t)]
    expected[np.broadcast_to(edge[:, None], expected.shape)] = NODATA
    valid = ~(cloud | edge | (saturated if layout == "theia_l2a" else False))
    coarse_grid = GeoRef((GEOREF.transform[0], 20.0, 0.0, GEOREF.transform[3], 0.0, -20.0),
                         32631)       # 20 m pixels, same corner
    for d, date in enumerate(DATES[:t]):
        product = os.path.join(folder, _product_name(layout, d, date))
        os.makedirs(os.path.join(product, "MASKS"), exist_ok=True)
        for i, band in enumerate(BANDS):
            if band in TWENTY:
                values = np.where(to_20m(edge[d].astype(np.int16)) > 0, NODATA,
                                  to_20m(cube[d, i]))
            else:
                values = np.where(edge[d], NODATA, cube[d, i])
            write_geotiff(_band_path(product, layout, band), values.astype(np.int16),
                          coarse_grid if band in TWENTY else GEOREF, nodata=NODATA)
        _write_masks(product, layout, d, cloud, edge, saturated, coarse_grid)
    return expected, valid, DATES[:t]


def _product_name(layout, d, date):
    ymd = date.replace("-", "")
    if layout == "per_band":
        return f"S2B_31TCJ_{ymd}_0_L2A"
    if layout == "theia_l3a":
        return f"SENTINEL2X_{ymd}-000000-000_L3A_T31TCJ_C_V2-2"
    return f"SENTINEL2{'AB'[d % 2]}_{ymd}-105432-123_L2A_T31TCJ_C_V2-2"


def _band_path(product, layout, band):
    if layout == "per_band":            # B02.tif ... B8A.tif, as STAC assets are named
        number = int(band[1:].rstrip("A"))
        return os.path.join(product, f"B{number:02d}{'A' if band.endswith('A') else ''}.tif")
    kind = "FRC" if layout == "theia_l3a" else "FRE"
    return os.path.join(product, f"{os.path.basename(product)}_{kind}_{band}.tif")


def _write_masks(product, layout, d, cloud, edge, saturated, coarse_grid):
    masks, name = os.path.join(product, "MASKS"), os.path.basename(product)
    if layout == "theia_l3a":
        flg = np.where(edge[d], 0, np.where(cloud[d], 1, 4)).astype(np.uint8)
        write_geotiff(os.path.join(masks, f"{name}_FLG_R1.tif"), flg, GEOREF)
    elif layout == "theia_l2a":
        write_geotiff(os.path.join(masks, f"{name}_CLM_R1.tif"),
                      (cloud[d] * 2).astype(np.uint8), GEOREF)
        write_geotiff(os.path.join(masks, f"{name}_EDG_R1.tif"), edge[d].astype(np.uint8),
                      GEOREF)
        write_geotiff(os.path.join(masks, f"{name}_SAT_R1.tif"),
                      (saturated[d] * 4).astype(np.uint8), GEOREF)
    else:
        scl = np.where(to_20m(edge[d].astype(np.int16)) > 0, 0,
                       np.where(to_20m(cloud[d].astype(np.int16)) > 0, 9, 4)).astype(np.uint8)
        write_geotiff(os.path.join(product, "SCL.tif"), scl, coarse_grid)
