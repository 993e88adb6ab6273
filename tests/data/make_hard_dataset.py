"""A small, hard, paper-like dataset, generated at run time (numpy + pyshp + sits_ref).

    python tests/data/make_hard_dataset.py OUTDIR [--seed 0] [--absent-class]

120 x 120 px at 10 m (EPSG:32631), the paper's 11 monthly 2018 dates, 10 Sentinel-2
bands as int16 reflectance x 10000. The landscape is a warped Voronoi tessellation of
parcels, one class each, with imbalanced class frequencies (shrubland and water are
minorities). Every parcel gets its own phenology (phase +-20 days, amplitude +-25 %)
and spectral gain; pixels get texture and noise, and are averaged from a 3x finer
grid so parcel borders are mixed. Shrubland sits between broad-leaved woodland and
permanent grassland, so both pairs are confusable. Three dates carry unmasked
residual clouds and their shadows. Labels are small quadrilaterals / pentagons inside
parcel cores; train and test polygons lie in different parcels. The same seed gives
byte-identical files; generation takes about a second.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import shapefile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from sits_ref.geotiff import GeoRef, write_geotiff  # noqa: E402

N, FINE, SPACING = 120, 3, 12            # pixels per side, fine cells per pixel, parcel size
X0, Y0 = 356040.0, 4835680.0             # upper-left corner, EPSG:32631, 10 m pixels
NODATA = -10000
DATES = ["2018-02-15", "2018-03-15", "2018-04-15", "2018-05-15", "2018-06-15",
         "2018-07-08", "2018-08-15", "2018-09-15", "2018-10-15", "2018-11-15",
         "2018-12-15"]
DOY = np.array([46, 74, 105, 135, 166, 189, 227, 258, 288, 319, 349], float)
BANDS = ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
CLASSES = {1: ("Built up", "#e6004d"), 2: ("Woodland needle-leaved trees", "#238b23"),
           3: ("Woodland broad-leaved trees", "#80ff00"), 5: ("Shrubland", "#804000"),
           6: ("Permanent herbaceous land", "#ccf24e"),
           7: ("Periodically herbaceous land", "#feff80"), 11: ("Water", "#0080ff")}
SHARE = {7: .31, 6: .22, 3: .19, 1: .12, 5: .09, 11: .07}   # parcel frequencies
TRAIN_POLYS = {1: 8, 3: 12, 5: 5, 6: 12, 7: 14, 11: 5}       # polygons per class
TEST_POLYS = {1: 8, 3: 11, 5: 5, 6: 11, 7: 13, 11: 5, 2: 4}    # 2: only with absent_class
PRJ = ('PROJCS["WGS 84 / UTM zone 31N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
       '6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM['
       '"Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]],PROJECTION['
       '"Transverse_Mercator"],PARAMETER["central_meridian",3],PARAMETER["scale_factor",0.9996],'
       'PARAMETER["false_easting",500000],UNIT["metre",1],AUTHORITY["EPSG","32631"]]')

# Endmember reflectances x 10000, band order as BANDS.
GREEN = np.array([260, 560, 300, 4300, 950, 3000, 3950, 4400, 2150, 1050], float)
DRY = np.array([780, 1080, 1330, 2500, 1600, 2150, 2400, 2650, 3400, 2550], float)
SOIL = np.array([800, 1120, 1400, 2050, 1600, 1800, 1950, 2150, 3000, 2500], float)
CANOPY = np.array([130, 310, 130, 3900, 560, 2950, 3800, 4100, 1580, 580], float)
WOOD = np.array([340, 500, 560, 1850, 780, 1450, 1700, 1950, 2050, 1250], float)
NEEDLE = np.array([150, 300, 150, 2500, 520, 1850, 2350, 2600, 1150, 460], float)
WATER = np.array([300, 450, 350, 180, 330, 200, 180, 150, 80, 50], float)
URBAN = np.array([900, 1050, 1250, 1800, 1350, 1600, 1700, 1800, 2400, 2100], float)
CLOUD = np.array([4200, 4100, 4000, 4300, 4050, 4200, 4250, 4300, 3600, 3000], float)
PIXEL_NOISE = 0.04                       # relative per-pixel noise (plus 40 DN)


def smooth_noise(rng, shape, scale):
    """Gaussian random field, unit std, correlation length ~``scale`` cells (FFT)."""
    ky, kx = np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :]
    filt = np.exp(-2 * (np.pi * scale) ** 2 * (kx ** 2 + ky ** 2))
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * filt, s=shape)
    return (field - field.mean()) / field.std()


def bump(center, width):
    """Gaussian pulse over the year, peak 1 at day ``center``."""
    return np.exp(-0.5 * ((DOY - center) / width) ** 2)


def vegetation(woody, s, m, rng):
    """(T, bands) mix of deciduous woody cover (share ``woody``) and grass, with phase
    shift ``s`` days and amplitude ``m``: a continuum from meadow to woodland."""
    on = 1 / (1 + np.exp(-(DOY - 115 - s) / 12)) / (1 + np.exp((DOY - 300 - s) / 14))
    leaf = np.clip(.25 + .7 * m * on, 0, 1)[:, None]
    dip = rng.uniform(0, .35) * bump(rng.uniform(200, 240) + s, 25)
    grass = np.clip(.35 + .5 * m * bump(135 + s, 55) - dip, 0, 1)[:, None]
    return woody * (leaf * CANOPY + (1 - leaf) * WOOD) + \
        (1 - woody) * (grass * GREEN + (1 - grass) * DRY)


def parcel_spectra(code, rng):
    """(T, bands) reflectance x 10000 of one parcel of class ``code``, own phenology.

    Woody shares overlap: meadow 0-0.35, shrubland 0.2-0.7, broad-leaved 0.55-1, so
    shrubland is confusable with both; some crops are temporary grassland."""
    s, m = rng.uniform(-20, 20), rng.uniform(.75, 1.25)      # phase shift, amplitude
    if code == 1:                                            # built up with gardens
        u = rng.uniform(.55, .9)
        mix = u * URBAN + (1 - u) * vegetation(rng.uniform(0, .5), s, m, rng)
    elif code == 2:                                          # evergreen, slight spring flush
        g = np.clip(.75 + .1 * m * bump(150 + s, 40), 0, 1)[:, None]
        mix = g * NEEDLE + (1 - g) * WOOD
    elif code in (3, 5, 6):
        lo, hi = {3: (.5, 1), 5: (.15, .75), 6: (0, .4)}[code]
        mix = vegetation(rng.uniform(lo, hi), s, m, rng)
    elif code == 7 and rng.random() < .2:                    # temporary grassland, mown
        mix = vegetation(0, s, m, rng) * (1 - .25 * bump(rng.uniform(140, 180), 12))[:, None]
    elif code == 7:                                          # winter or summer crop
        peak = (125 if rng.random() < .55 else 195) + s
        g = np.clip(.9 * m * bump(peak, rng.uniform(25, 35)), 0, 1)[:, None]
        mix = g * GREEN + (1 - g) * SOIL
    else:                                                    # water, turbid / algal blooms
        g = (.05 + .12 * m * bump(200 + s, 40))[:, None]
        mix = (1 - g) * WATER + g * (.5 * GREEN + .5 * SOIL)
    gain = 1 + rng.normal(0, .08) + rng.normal(0, .03, len(BANDS))
    return mix * gain


def landscape(rng, absent_class):
    """Fine-grid parcel ids (warped Voronoi) and the class code of each parcel."""
    g = np.arange(SPACING / 2, N, SPACING)
    sy, sx = [a.ravel() + rng.uniform(-.4, .4, a.size) * SPACING
              for a in np.meshgrid(g, g, indexing="ij")]
    c = (np.arange(N * FINE) + .5) / FINE                   # fine cell centres, warped
    y, x = [a + 3 * smooth_noise(rng, a.shape, 8 * FINE) for a in np.meshgrid(c, c, indexing="ij")]
    ids = ((y[..., None] - sy) ** 2 + (x[..., None] - sx) ** 2).argmin(-1)
    n = sy.size
    counts = {k: max(4, int(round(v * n))) for k, v in SHARE.items()}
    if absent_class:
        counts[2] = 3                                        # test-only needle-leaved
    counts[7] += n - sum(counts.values())
    minor = [k for k, v in counts.items() if v < .1 * n]
    seq = np.concatenate([np.full(counts[k], k) for k in minor] + [rng.permutation(
        np.concatenate([np.full(v, k) for k, v in counts.items() if k not in minor]))])
    # minority classes go to random parcels of above-median size: room for their labels
    area = np.bincount(ids.ravel(), minlength=n)
    order = rng.permutation(n)
    big = area[order] >= np.median(area)
    codes = np.empty(n, int)
    codes[np.concatenate([order[big], order[~big]])] = seq
    return ids, codes


def render(ids, codes, rng):
    """(T, bands, N, N) int16 images: mixed borders, texture, noise, clouds, shadows."""
    spectra = np.stack([parcel_spectra(k, rng) for k in codes])      # (P, T, B)
    fine = spectra[ids] * (1 + .05 * smooth_noise(rng, ids.shape, 2 * FINE))[..., None, None]
    img = fine.reshape(N, FINE, N, FINE, len(DATES), len(BANDS)).mean((1, 3))
    img = img.transpose(2, 3, 0, 1)                                  # (T, B, N, N)
    img = img * (1 + PIXEL_NOISE * rng.standard_normal(img.shape)) \
        + 40 * rng.standard_normal(img.shape)
    for t in np.sort(rng.choice(len(DATES), 3, replace=False)):
        field = smooth_noise(rng, (N, N), 5)
        cover = rng.uniform(.03, .06)               # cloud + shadow: 5-15 %
        alpha = np.clip((field - np.quantile(field, 1 - cover)) / .4 + .5, 0, 1) * .85
        dy, dx = rng.integers(4, 9, 2) * rng.choice([-1, 1], 2)
        shadow = np.roll(alpha, (dy, dx), (0, 1)) * (1 - alpha)
        img[t] = (img[t] * (1 - alpha) + CLOUD[:, None, None] * alpha) * (1 - .55 * shadow)
    return np.clip(np.rint(img), 1, 10000).astype(np.int16)


def core_map(ids):
    """Parcel id of pixels wholly inside one parcel and 1 px from its border, else -1."""
    blocks = ids.reshape(N, FINE, N, FINE).transpose(0, 2, 1, 3).reshape(N, N, -1)
    pure = np.where((blocks == blocks[..., :1]).all(-1), blocks[..., 0], -1)
    core, pad = pure.copy(), np.pad(pure, 1, constant_values=-1)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            core[pad[1 + dy:N + 1 + dy, 1 + dx:N + 1 + dx] != pure] = -1
    return core


def inside(ring, px, py):
    """Even-odd test of points (px, py) against a ring (M, 2) of (x, y) pixel units."""
    res = np.zeros(np.shape(px), bool)
    for (a, b), (c, d) in zip(ring, np.roll(ring, -1, 0)):
        res ^= ((b > py) != (d > py)) & (px < (c - a) * (py - b) / (d - b + 1e-12) + a)
    return res


def draw_polygon(parcel, core, free, rng):
    """An irregular 4-5 sided ring (pixel units) 2-6 px across in ``parcel``; its
    bounding box must be free core of that parcel. Returns (ring, n pixels) or None."""
    cand = np.argwhere((core == parcel) & free)
    for attempt in range(40 if len(cand) else 0):       # shrinks while it fails
        r, c = cand[rng.integers(len(cand))] + .5 + rng.uniform(-.3, .3, 2)
        n, radius = rng.integers(4, 6), rng.uniform(1.2, 3.0) * (1 - attempt / 80)
        ang = rng.uniform(0, 2 * np.pi) + (np.arange(n) + rng.uniform(-.3, .3, n)) * 2 * np.pi / n
        rad = radius * rng.uniform(.65, 1.0, n)
        ring = np.round(np.c_[c + rad * np.cos(ang), r + rad * np.sin(ang)], 3)
        (c0, r0), (c1, r1) = np.floor(ring.min(0)).astype(int), np.floor(ring.max(0)).astype(int)
        if r0 < 0 or c0 < 0 or r1 >= N or c1 >= N or \
                not ((core[r0:r1 + 1, c0:c1 + 1] == parcel) & free[r0:r1 + 1, c0:c1 + 1]).all():
            continue
        py, px = np.mgrid[r0:r1 + 1, c0:c1 + 1] + .5
        n_px = int(inside(ring, px, py).sum())
        if n_px >= 3:
            free[max(r0 - 1, 0):r1 + 2, max(c0 - 1, 0):c1 + 2] = False
            return ring, n_px
    return None


def draw_labels(ids, codes, rng):
    """{'train'|'test': [(code, ring, n_px)]}: train and test in different parcels."""
    core, free = core_map(ids), np.ones((N, N), bool)
    area = np.bincount(core[core >= 0], minlength=len(codes))
    out = {"train": [], "test": []}
    for code in sorted(set(codes.tolist())):
        parcels = rng.permutation([p for p in np.flatnonzero(codes == code) if area[p] >= 9])
        n_test = len(parcels)                                # split the core area pro rata
        if code in TRAIN_POLYS:
            share = TEST_POLYS[code] / (TEST_POLYS[code] + TRAIN_POLYS[code])
            cum = np.cumsum(area[parcels]) / area[parcels].sum()
            n_test = min(int(np.searchsorted(cum, share)) + 1, len(parcels) - 1)
        for split, members, target in (("test", parcels[:n_test], TEST_POLYS),
                                       ("train", parcels[n_test:], TRAIN_POLYS)):
            want, got = target.get(code, 0), 0
            for _ in range(30 * want):
                if got == want:
                    break
                room = [((core == p) & free).sum() * rng.uniform(.5, 1) for p in members]
                hit = draw_polygon(members[int(np.argmax(room))], core, free, rng)
                if hit is not None:
                    out[split].append((code, *hit))
                    got += 1
            if got < want:
                raise RuntimeError(f"class {code}: only {got}/{want} {split} polygons fit")
    return out


def write_shapefile(path, records):
    """POLYGON shapefile (rings clockwise in map coordinates), 'code' field, .prj."""
    with shapefile.Writer(path, shapeType=shapefile.POLYGON) as w:
        w.field("code", "N", 4, 0)
        w.field("id", "N", 6, 0)
        w.field("pixels", "N", 6, 0)                 # pixel centres inside
        for k, (code, ring, n_px) in enumerate(records, 1):
            x, y = X0 + 10 * ring[:, 0], Y0 - 10 * ring[:, 1]
            pts = [(round(a, 2), round(b, 2)) for a, b in zip(x, y)]
            if np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) > 0:   # counter-clockwise
                pts = pts[::-1]
            w.poly([pts + pts[:1]])
            w.record(int(code), k, n_px)
    with open(path[:-4] + ".dbf", "r+b") as f:      # pin the DBF date: reruns identical
        f.seek(1)
        f.write(bytes([118, 1, 1]))
    with open(path[:-4] + ".prj", "w") as f:
        f.write(PRJ)


def make_hard_dataset(folder, seed=0, absent_class=False):
    """Write the dataset into ``folder`` and return the manifest path.

    ``absent_class``: also list needle-leaved woodland (code 2), which has test
    polygons but no training polygon.
    """
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids, codes = landscape(rng, absent_class)
    images = render(ids, codes, rng)
    georef = GeoRef((X0, 10.0, 0.0, Y0, 0.0, -10.0), 32631, NODATA)
    names = [f"S2_L3A_{d.replace('-', '')}.tif" for d in DATES]
    for name, date, cube in zip(names, DATES, images):
        write_geotiff(os.path.join(folder, name), cube, georef, nodata=NODATA,
                      metadata={"date": date, "bands": ",".join(BANDS)})
    labels = draw_labels(ids, codes, rng)
    for split, records in labels.items():
        write_shapefile(os.path.join(folder, f"{split}_polygons.shp"), records)
    present = sorted(set(codes.tolist()))
    manifest = {
        "name": f"sits_ref hard synthetic (seed {seed})",
        "description": "synthetic, tests/data/make_hard_dataset.py: overlapping phenologies, "
                       "mixed borders, unmasked clouds, sparse labels; not real data",
        "images": names, "dates": DATES, "bands": BANDS, "scale": 0.0001,
        "train_polygons": "train_polygons.shp", "test_polygons": "test_polygons.shp",
        "class_field": "code",
        "classes": [{"code": k, "name": CLASSES[k][0], "color": CLASSES[k][1]}
                    for k in present]}
    path = os.path.join(folder, "manifest.json")
    with open(path, "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    return path


def label_stats(folder):
    """{split: {code: [n polygons, n pixels]}} from the written shapefiles."""
    stats = {}
    for split in ("train", "test"):
        with shapefile.Reader(os.path.join(folder, f"{split}_polygons.shp")) as r:
            for rec in r.records():
                cell = stats.setdefault(split, {}).setdefault(rec["code"], [0, 0])
                cell[0], cell[1] = cell[0] + 1, cell[1] + rec["pixels"]
    return stats


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--absent-class", action="store_true")
    args = parser.parse_args()
    print(make_hard_dataset(args.outdir, args.seed, args.absent_class))
    for split, per_class in label_stats(args.outdir).items():
        print(f"{split}: " + ", ".join(f"{c}: {p} poly {n} px" for c, (p, n) in
                                       sorted(per_class.items())))
