"""Generate the bundled synthetic sample dataset (dev script; numpy + pyshp + sits_ref).

    python data_sample/make_sample.py          # rewrites data_sample/* in place

A 2.56 km x 2.56 km landscape inside tile 31TCJ is drawn on a fine grid (2.5 m):
crop parcels, meadows, forest stands, shrubland, a river with gravel-pit lakes and
quarries, villages and roads. Every object gets its own phenology; each date's
10-band spectrum is a linear mixture of Sentinel-2-like endmember spectra, with
spatially smooth texture. Averaging the fine grid down to 10 m mixes borders, and
the 20 m bands are averaged again 2x2. Sparse labelled polygons are then drawn
inside objects (train and test on different objects). Fixed seed: re-running it
gives byte-identical files.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import shapefile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sits_ref.geotiff import GeoRef, write_geotiff  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))
SEED = 2018
N, FINE = 256, 4                         # 10 m pixels per side, fine cells per pixel
X0, Y0 = 356040.0, 4835680.0             # upper-left corner, EPSG:32631
DATES = ["2018-02-15", "2018-03-15", "2018-04-15", "2018-05-15", "2018-06-15",
         "2018-07-08", "2018-08-15", "2018-09-15", "2018-10-15", "2018-11-15",
         "2018-12-15"]
DOY = np.array([46, 74, 105, 135, 166, 189, 227, 258, 288, 319, 349], float)
BANDS = ["B2", "B3", "B4", "B8", "B5", "B6", "B7", "B8A", "B11", "B12"]
NODATA = -10000
CLASSES = [(1, "Built up", "#e6004d"), (2, "Woodland needle-leaved trees", "#238b23"),
           (3, "Woodland broad-leaved trees", "#80ff00"), (5, "Shrubland", "#804000"),
           (6, "Permanent herbaceous land", "#ccf24e"),
           (7, "Periodically herbaceous land", "#feff80"),
           (10, "Non-vegetated land", "#bfbfbf"), (11, "Water", "#0080ff")]
PRJ = ('PROJCS["WGS 84 / UTM zone 31N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
       '6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM['
       '"Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY['
       '"EPSG","9122"]],AUTHORITY["EPSG","4326"]],PROJECTION["Transverse_Mercator"],PARAMETER['
       '"latitude_of_origin",0],PARAMETER["central_meridian",3],PARAMETER["scale_factor",0.9996]'
       ',PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1,'
       'AUTHORITY["EPSG","9001"]],AXIS["Easting",EAST],AXIS["Northing",NORTH],AUTHORITY["EPSG",'
       '"32631"]]')

# Endmember surface reflectances x 10000, band order B2 B3 B4 B8 B5 B6 B7 B8A B11 B12.
ENDMEMBERS = np.array([
    [260, 560, 300, 4300, 950, 3000, 3950, 4400, 2150, 1050],      # 0 green herbaceous canopy
    [780, 1080, 1330, 2500, 1600, 2150, 2400, 2650, 3400, 2550],   # 1 dry vegetation / straw
    [800, 1120, 1400, 2050, 1600, 1800, 1950, 2150, 3000, 2500],   # 2 agricultural soil
    [130, 310, 130, 3900, 560, 2950, 3800, 4100, 1580, 580],       # 3 broad-leaved canopy
    [340, 500, 560, 1850, 780, 1450, 1700, 1950, 2050, 1250],      # 4 leafless branches+litter
    [150, 300, 150, 2500, 520, 1850, 2350, 2600, 1150, 460],       # 5 needle-leaved canopy
    [260, 360, 260, 130, 240, 140, 130, 110, 60, 40],              # 6 clear deep water
    [450, 780, 770, 330, 780, 380, 370, 260, 140, 70],             # 7 turbid water
    [700, 800, 860, 1000, 900, 950, 980, 1020, 1250, 1150],        # 8 asphalt
    [620, 820, 1300, 2150, 1500, 1850, 2050, 2250, 3200, 2850],    # 9 red tile roof
    [1350, 1550, 1700, 2250, 1800, 2050, 2150, 2300, 2850, 2550],  # 10 concrete / paving
    [1550, 1900, 2250, 2850, 2450, 2650, 2750, 2950, 3800, 3250],  # 11 gravel / limestone
], float)
K = len(ENDMEMBERS)
ILLUM = np.array([.80, .88, .95, 1, 1, .98, .93, .88, .82, .76, .72])  # sun height, canopies
HAZE = np.array([500, 450, 400, 350, 400, 360, 350, 340, 250, 180])  # thin cloud/haze
WET = np.array([.78, .82, .90, .95, 1, 1, 1, 1, .95, .85, .80])    # soil moisture darkening


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def bump(center, width):
    """Gaussian pulse over the year, peak 1 at ``center`` (day of year)."""
    return np.exp(-0.5 * ((DOY - center) / width) ** 2)


def smooth_noise(rng, shape, scale):
    """Gaussian random field, unit std, correlation length ~``scale`` cells (FFT filter)."""
    white = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    field = np.fft.irfft2(np.fft.rfft2(white) * np.exp(-2 * (np.pi * scale) ** 2 *
                                                       (kx ** 2 + ky ** 2)), s=shape)
    return (field - field.mean()) / field.std()


# ----------------------------------------------------------------------------- landscape
class Landscape:
    """Fine-grid maps of regions (labelled objects) and covers (spectral behaviours)."""

    def __init__(self, rng):
        self.rng = rng
        n = N * FINE
        self.region = np.zeros((n, n), np.int32)
        self.cover = np.zeros((n, n), np.int32)
        self.labels, self.kinds = [], []          # per region: class code, kind string
        self.covers = []                          # per cover: (model name, params dict)
        c = (np.arange(n) + 0.5) / FINE           # fine cell centres in 10 m pixel units
        self.y, self.x = np.meshgrid(c, c, indexing="ij")
        warp = 6.0
        self.wy = self.y + warp * smooth_noise(rng, (n, n), 25 * FINE)
        self.wx = self.x + warp * smooth_noise(rng, (n, n), 25 * FINE)

    def new_region(self, label, kind, model=None, **params):
        """Register a region (and, if ``model`` is given, its single cover)."""
        self.labels.append(label)
        self.kinds.append(kind)
        cover = self.new_cover(model, **params) if model else None
        return len(self.labels) - 1, cover

    def new_cover(self, model, **params):
        """Register a cover; each gets its own small spectral gain (±5 %, per band)."""
        gain = 1 + self.rng.normal(0, .04) + self.rng.normal(0, .03, len(BANDS))
        self.covers.append((model, dict(params, gain=gain)))
        return len(self.covers) - 1

    def labels_of(self):
        """Class code of every fine cell."""
        return np.asarray(self.labels)[self.region]

    def paint(self, mask, region, cover):
        self.region[mask] = region
        self.cover[mask] = cover

    def voronoi(self, spacing, jitter=0.45):
        """Nearest-seed cells on warped coordinates: irregular parcels (ids, n_seeds)."""
        g = np.arange(spacing / 2, N, spacing)
        sy, sx = [a.ravel() + self.rng.uniform(-jitter, jitter, a.size) * spacing
                  for a in np.meshgrid(g, g, indexing="ij")]
        ids = np.empty(self.region.shape, np.int32)
        for r0 in range(0, ids.shape[0], 64):
            d = ((self.wy[r0:r0 + 64, :, None] - sy) ** 2 +
                 (self.wx[r0:r0 + 64, :, None] - sx) ** 2)
            ids[r0:r0 + 64] = d.argmin(-1)
        return ids, sy.size

    def blob(self, cy, cx, ry, rx, angle=0.0, rough=0.15, warped=True):
        """Irregular ellipse centred on (cy, cx) in pixel units (warped: wiggly outline)."""
        ca, sa = np.cos(angle), np.sin(angle)
        dy, dx = (self.wy - cy, self.wx - cx) if warped else (self.y - cy, self.x - cx)
        u, v = (dx * ca + dy * sa) / rx, (-dx * sa + dy * ca) / ry
        return u ** 2 + v ** 2 < 1 + rough * np.sin(3 * np.arctan2(v, u) + cy)


def crop_params(rng):
    """Random crop calendar: winter cereal, rapeseed or summer crop (maize/sunflower)."""
    kind = rng.choice(["winter", "rapeseed", "summer"], p=[.45, .15, .40])
    soil = dict(soilb=rng.uniform(.75, 1.2), gmax=rng.uniform(.8, .97))
    if kind == "winter":
        return dict(soil, up=rng.uniform(60, 85), w_up=15, sen=rng.uniform(155, 172),
                    harv=rng.uniform(180, 198), till=rng.uniform(215, 265), stub=.6,
                    sow2=rng.uniform(295, 325), autumn=rng.uniform(.1, .3), cover=0, till0=0)
    if kind == "rapeseed":
        return dict(soil, up=rng.uniform(20, 45), w_up=15, sen=rng.uniform(145, 160),
                    harv=rng.uniform(172, 185), till=rng.uniform(230, 270), stub=.5,
                    sow2=rng.uniform(240, 260), autumn=rng.uniform(.3, .5), cover=0, till0=0)
    return dict(soil, up=rng.uniform(150, 178), w_up=9, sen=rng.uniform(232, 258),
                harv=rng.uniform(262, 300), till=rng.uniform(305, 345), stub=.5,
                sow2=999, autumn=0, cover=rng.uniform(0, .35), till0=rng.uniform(85, 120))


def grass_params(rng, fodder=False):
    """Meadow (summer dip, a hay cut, some shrub encroachment) or fodder crop (2 cuts)."""
    return dict(g=rng.uniform(.5, .85), dip=rng.uniform(.1, .6), dip_doy=rng.uniform(205, 240),
                mow=rng.uniform(140, 180), mow_depth=rng.uniform(.4, .7) if fodder else
                rng.uniform(0, .4), cut2=rng.uniform(.4, .6) if fodder else 0,
                wood=0 if fodder else rng.uniform(0, .2), soilb=rng.uniform(.8, 1.1))


def shrub_params(rng):
    """Green, woody and dry shares of a heath / scrub patch, and its summer drying."""
    return dict(g=rng.uniform(.3, .6), wood=rng.uniform(.05, .45), dry=rng.uniform(.1, .35),
                dip=rng.uniform(.1, .45), soilb=rng.uniform(.8, 1.1))


def forest_params(rng):
    """Canopy cover, share of the other leaf type (mixed stands), leaf-on / leaf-off days."""
    return dict(c=rng.uniform(.7, .96), mix=rng.uniform(0, .4), on=rng.uniform(95, 118),
                off=rng.uniform(305, 325), soilb=rng.uniform(.7, 1.0))


def bare_params(rng):
    """Quarry / bare land: gravel share (rest soil), brightness, spring weeds."""
    return dict(gravel=rng.uniform(.1, .9), bright=rng.uniform(.8, 1.15),
                weed=rng.uniform(0, .3), soilb=rng.uniform(.8, 1.2))


def build_landscape(rng):
    """Draw fields, forests, clearings, river, lakes, quarries, villages and roads."""
    L = Landscape(rng)
    cells, n_cells = L.voronoi(19)                          # agricultural parcels
    for i in range(n_cells):
        u = rng.random()
        if u < .06:
            r, c = L.new_region(7, "crop", "grass", **grass_params(rng, fodder=True))
        elif u < .72:
            r, c = L.new_region(7, "crop", "crop", **crop_params(rng))
        elif u < .94:
            r, c = L.new_region(6, "grass", "grass", **grass_params(rng))
        else:
            r, c = L.new_region(5, "shrub", "shrub", **shrub_params(rng))
        L.paint(cells == i, r, c)
    forest_zone = (smooth_noise(rng, L.region.shape, 30 * FINE)
                   + 1.6 * (L.x + 0.6 * L.y) / N) > 1.45    # big forest to the south-east
    stands, n_stands = L.voronoi(42, jitter=.4)
    for i in range(n_stands):
        u = rng.random()
        if u < .58:
            r, c = L.new_region(3, "broadleaf", "broadleaf", **forest_params(rng))
        elif u < .92:
            r, c = L.new_region(2, "conifer", "conifer", **forest_params(rng))
        else:
            r, c = L.new_region(5, "shrub", "shrub", **shrub_params(rng))
        L.paint(forest_zone & (stands == i), r, c)
    for _ in range(8):                                       # small woods among fields
        cy, cx = rng.uniform(15, N - 15, 2)
        model = "broadleaf" if rng.random() < .7 else "conifer"
        r, c = L.new_region(3 if model == "broadleaf" else 2, "wood", model, **forest_params(rng))
        L.paint(L.blob(cy, cx, rng.uniform(6, 12), rng.uniform(8, 16), rng.uniform(0, 3)), r, c)
    for _ in range(6):                                       # shrubland patches (heath)
        cy, cx = rng.uniform(15, N - 15, 2)
        r, c = L.new_region(5, "shrub", "shrub", **shrub_params(rng))
        L.paint(L.blob(cy, cx, rng.uniform(4, 8), rng.uniform(5, 10), rng.uniform(0, 3)), r, c)
    add_water(L, rng)
    add_roads(L, rng)
    add_villages(L, rng)
    add_clearings(L, rng)
    return L


def add_clearings(L, rng):
    """Round clearings (meadow or heath) well inside forest stands: polygons with holes."""
    L.clearings = []
    forest = np.isin(L.region, [i for i, k in enumerate(L.kinds) if k in ("broadleaf",
                                                                           "conifer")])
    for cy, cx in rng.uniform(15, N - 15, (1000, 2)):        # clearings inside stands
        if len(L.clearings) == 4:
            break
        i, j = int(cy * FINE), int(cx * FINE)
        r0 = L.region[i, j]
        rr = rng.uniform(3, 4.5)
        if not forest[i, j] or not (L.region[L.blob(cy, cx, rr + 7, rr + 7, 0, 0, False)]
                                    == r0).all():
            continue
        model = "grass" if len(L.clearings) % 2 == 0 else "shrub"
        r, c = L.new_region(6 if model == "grass" else 5, "clearing", model,
                            **(grass_params(rng) if model == "grass" else shrub_params(rng)))
        L.paint(L.blob(cy, cx, rr, rr, 0, 0, False), r, c)
        L.clearings.append((r0, cy, cx, rr))


def add_water(L, rng):
    """Meandering river (split in 3 reaches) with a riparian strip, gravel pits, quarries."""
    centre = 0.55 * N + 0.12 * N * np.sin(L.x / N * 5 + 1) + 0.15 * (L.x - N / 2) \
        + 2.0 * smooth_noise(rng, L.x.shape, 20 * FINE)
    dist = np.abs(L.y - centre)
    L.paint(dist < 6.5, *L.new_region(3, "riparian", "broadleaf", **forest_params(rng)))
    for k in range(3):
        r, c = L.new_region(11, "river", "water", turb=rng.uniform(.5, .8), algae=0)
        L.paint((dist < 3.2) & (L.x >= k * N / 3) & (L.x < (k + 1) * N / 3), r, c)
    for k in range(4):                                       # gravel pits beside the river
        cx = (k + 0.5) * N / 4 + rng.uniform(-15, 15)
        cy = np.interp(cx, L.x[0], centre[int(cx * FINE)]) + rng.choice([-1, 1]) * \
            rng.uniform(20, 28)
        r, c = L.new_region(11, "lake", "water", turb=rng.uniform(.05, .35),
                            algae=rng.uniform(0, .05))
        L.paint(L.blob(cy, cx, rng.uniform(9, 12), rng.uniform(13, 18), rng.uniform(0, 3)), r, c)
        r, c = L.new_region(10, "quarry", "bare", **bare_params(rng))
        L.paint(L.blob(cy + rng.uniform(-4, 4), cx + rng.choice([-1, 1]) * 19, 5, 6.5,
                       rng.uniform(0, 3)) & (L.labels_of() != 11), r, c)
    for _ in range(7):                                       # isolated quarries / bare land
        cy, cx = rng.uniform(12, N - 12, 2)
        r, c = L.new_region(10, "bare", "bare", **bare_params(rng))
        L.paint(L.blob(cy, cx, rng.uniform(3.5, 5.5), rng.uniform(4, 7), rng.uniform(0, 3)), r, c)


def add_roads(L, rng):
    """A few gently curving roads (6-8 m wide) crossing the scene: linear built-up."""
    for k in range(3):
        a, b = rng.uniform(0.1, 0.9, 2) * N
        if k == 1:      # north-south road: distance to x = f(y)
            d = np.abs(L.x - (a + (b - a) * L.y / N + 4 * np.sin(L.y / 40)))
        else:
            d = np.abs(L.y - (a + (b - a) * L.x / N + 4 * np.sin(L.x / 40)))
        r, c = L.new_region(1, "road", "asphalt", bright=rng.uniform(.9, 1.1))
        L.paint((d < 0.35) & (L.labels_of() != 11), r, c)


def add_villages(L, rng):
    """Villages: a street grid and a mosaic of roofs, paving, gardens and trees."""
    L.town = []
    for cy, cx, ry, rx in [(0.3 * N, 0.32 * N, 26, 31), (0.82 * N, 0.2 * N, 19, 21),
                           (0.22 * N, 0.78 * N, 18, 22)]:
        mask = L.blob(cy, cx, ry, rx, rng.uniform(0, 3), rough=.2) & (L.labels_of() != 11)
        r, _ = L.new_region(1, "village")
        L.town.append(r)
        covers = [L.new_cover("roof", bright=rng.uniform(.9, 1.1)),
                  L.new_cover("concrete", bright=rng.uniform(.9, 1.1)),
                  L.new_cover("grass", **grass_params(rng)),
                  L.new_cover("broadleaf", **forest_params(rng)),
                  L.new_cover("asphalt", bright=rng.uniform(.9, 1.1))]
        cell = 3                                             # 7.5 m mosaic cells
        n, m = -(-L.region.shape[0] // cell), L.region.shape[0]

        def cells(a):
            return a.repeat(cell, 0).repeat(cell, 1)[:m, :m]
        pick = rng.choice(5, (n, n), p=[.45, .17, .24, .10, .04])
        blocks = smooth_noise(rng, (n, n), 2.0)             # clustered houses / gardens
        pick[blocks < -0.7] = 0
        pick[blocks > 0.9] = rng.choice([2, 3], (n, n), p=[.6, .4])[blocks > 0.9]
        centre = np.hypot((L.y - cy) / ry, (L.x - cx) / rx)
        core = cells(rng.random((n, n))) < 0.5 - 0.4 * centre
        mosaic = np.asarray(covers)[cells(pick)]
        mosaic[core] = covers[0]                             # dense roofs in the centre
        a = rng.uniform(0, np.pi / 2)
        u, v = L.wx * np.cos(a) + L.wy * np.sin(a), -L.wx * np.sin(a) + L.wy * np.cos(a)
        streets = (np.abs((u % 9) - 4.5) < 0.4) | (np.abs((v % 11) - 5.5) < 0.4)
        mosaic[streets] = covers[4]
        L.region[mask] = r
        L.cover[mask] = mosaic[mask]


# ----------------------------------------------------------------------------- phenology
def fractions(model, p, vig=1.0):
    """Endmember fractions (11 dates, K) of one cover; ``vig`` scales its canopy."""
    f = np.zeros((len(DOY), K))
    if model == "crop":
        grow, sen = sig((DOY - p["up"]) / p["w_up"]), sig((DOY - p["sen"]) / 8)
        harv, till = sig((DOY - p["harv"]) / 4), sig((DOY - p["till"]) / 6)
        canopy = p["gmax"] * vig * grow
        f[:, 0] = canopy * (1 - sen) + vig * p["autumn"] * sig((DOY - p["sow2"]) / 12) * till \
            + vig * p["cover"] * (1 - sig((DOY - p["till0"]) / 8))
        f[:, 1] = canopy * sen * (1 - harv) + p["stub"] * harv * (1 - till)
    elif model == "grass":
        winter = 1 - .2 * (bump(46, 20) + bump(349, 20))
        g = p["g"] * vig * winter * (1 - p["dip"] * bump(p["dip_doy"], 25)) * \
            (1 - p["mow_depth"] * bump(p["mow"] + 10, 10))
        g = g * (1 - p["cut2"] * bump(p["mow"] + 55, 10))   # fodder: a second cut
        f[:, 0], f[:, 1], f[:, 5] = g, 0.75 * (p["g"] - g), p["wood"]
    elif model == "shrub":
        f[:, 0] = p["g"] * vig * (1 - p["dip"] * bump(220, 30))
        f[:, 5], f[:, 1] = p["wood"] * vig, p["dry"] + .15 * bump(220, 30)
    elif model in ("broadleaf", "conifer"):
        c = p["c"] * vig
        b = 1 - p["mix"] if model == "broadleaf" else p["mix"]  # mixed stands
        leaf = sig((DOY - p["on"]) / 8) * (1 - sig((DOY - p["off"]) / 12))
        autumn = leaf * 0.3 * sig((DOY - p["off"] + 15) / 8)
        f[:, 3], f[:, 1], f[:, 4] = c * b * (leaf - autumn), c * b * autumn, c * b * (1 - leaf)
        f[:, 5] = c * (1 - b)
        f[:, 5] += (1 - c) * .5                              # shade under the canopy
        f[:, 0] = (1 - c) * (.4 - .15 * bump(220, 30))       # understory, then litter
        f[:, 1] += (1 - c) * (.05 + .15 * bump(220, 30))
    elif model == "water":
        turb = np.clip(p["turb"] * vig * (1 + .4 * bump(80, 40)), 0, 1)
        f[:, 7], f[:, 0] = turb * (1 - p["algae"]), p["algae"] * bump(210, 40)
        f[:, 6] = 1 - f[:, 7] - f[:, 0]
        return f
    elif model == "bare":
        f[:, 11] = p["gravel"]
        f[:, 0] = p["weed"] * vig * bump(120, 35)
    else:                                                    # roof, concrete, asphalt
        f[:, {"roof": 9, "concrete": 10, "asphalt": 8}[model]] = 1.0
        return f * (p["bright"] * (0.75 + 0.25 * vig))
    f[:, 2] = np.clip(1 - f.sum(1), 0, None)                 # background: soil
    return f


def cover_spectrum(model, p, vig=1.0):
    """(11 dates, 10 bands) reflectance x 10000 of one cover."""
    f = fractions(model, p, vig)
    scale = np.ones((len(DOY), K))
    scale[:, 2] *= p.get("soilb", 1.0) * WET
    scale[:, 11] *= p.get("bright", 1.0)
    scale[:, [3, 5]] *= ILLUM[:, None]
    scale[:, 4] *= ILLUM
    return (f * scale) @ ENDMEMBERS * p["gain"]


def render(L, rng):
    """Per-date 10 m images (11, 10, N, N) float: fine mixing, texture, 20 m smoothing."""
    spec = np.array([cover_spectrum(m, p) for m, p in L.covers])            # (C, T, 10)
    sens = {"broadleaf": 0.06, "conifer": 0.06, "water": 0.3}  # canopy-density texture
    grad = spec - np.array([cover_spectrum(m, p, 1 - sens.get(m, 0.25)) for m, p in L.covers])
    shape = L.cover.shape
    vigour = np.clip(0.5 * smooth_noise(rng, shape, 3 * FINE)
                     + 0.25 * smooth_noise(rng, shape, 0.7 * FINE), -1.5, 1.5)
    tone = 1 + 0.03 * smooth_noise(rng, shape, 2.0 * FINE)
    out = np.empty((len(DOY), len(BANDS), N, N), np.float32)
    for t in range(len(DOY)):
        fine = (spec[L.cover, t] + vigour[..., None] * grad[L.cover, t]) * tone[..., None]
        img = fine.reshape(N, FINE, N, FINE, -1).mean((1, 3)).transpose(2, 0, 1)
        haze = np.clip(smooth_noise(rng, (N, N), 25) - 1.0, 0, None)  # compositing residue
        img += rng.uniform(0, 0.3) * haze * HAZE[:, None, None]
        noise = rng.standard_normal(img.shape) * (0.02 * img + 4)
        img = img + noise
        coarse = img[4:].reshape(6, N // 2, 2, N // 2, 2).mean((2, 4))       # 20 m bands
        img[4:] = coarse.repeat(2, 1).repeat(2, 2)
        out[t] = img
    return out


# ----------------------------------------------------------------------------- polygons
def to_map(px, py):
    return X0 + 10.0 * px, Y0 - 10.0 * py


def inside(ring, px, py):
    """Even-odd point-in-polygon test of points (px, py) against a ring (M, 2)."""
    res = np.zeros(np.shape(px), bool)
    x0, y0 = ring[:, 0], ring[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for a, b, c, d in zip(x0, y0, x1, y1):
        cross = ((b > py) != (d > py)) & (px < (c - a) * (py - b) / (d - b + 1e-12) + a)
        res ^= cross
    return res


def star(rng, cy, cx, radius, ok, r_min=0.0):
    """Irregular polygon around (cx, cy) whose rays stop where ``ok(y, x)`` fails."""
    n = rng.integers(8, 15)
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    pts = []
    for a in ang:
        steps = np.arange(r_min, max(radius * rng.uniform(.7, 1.3), r_min + .6), 0.2)
        ys, xs = cy + steps * np.sin(a), cx + steps * np.cos(a)
        good = ok(ys, xs)
        stop = steps[-1] if good.all() else steps[max(np.argmin(good) - 2, 0)]
        stop = max(stop, r_min + 0.3)
        pts.append((cx + stop * np.cos(a), cy + stop * np.sin(a)))
    return np.round(np.array(pts), 3)                        # = 1 cm, as written to disk


class PolygonDrawer:
    """Draws labelled polygons inside regions, at least ~1 px away from their borders."""

    def __init__(self, L, rng):
        self.L, self.rng = L, rng
        blocks = L.region.reshape(N, FINE, N, FINE).transpose(0, 2, 1, 3).reshape(N, N, -1)
        pure = np.where((blocks == blocks[..., :1]).all(-1), blocks[..., 0], -1)
        core = pure.copy()                                   # eroded by 1 px (8-neighbours)
        pad = np.pad(pure, 1, constant_values=-1)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                core[pad[1 + dy:N + 1 + dy, 1 + dx:N + 1 + dx] != pure] = -1
        self.core = core
        self.free = np.ones((N, N), bool)
        self.cy, self.cx = np.mgrid[0:N, 0:N] + 0.5

    def ok_fn(self, region):
        def ok(ys, xs):
            i, j = np.floor(ys).astype(int), np.floor(xs).astype(int)
            valid = (i >= 0) & (i < N) & (j >= 0) & (j < N)
            i, j = np.clip(i, 0, N - 1), np.clip(j, 0, N - 1)
            return valid & (self.core[i, j] == region) & self.free[i, j]
        return ok

    def pixels(self, rings):
        """Mask of 10 m pixel centres inside outer ring minus holes (pixel units)."""
        m = inside(rings[0], self.cx, self.cy)
        for hole in rings[1:]:
            m &= ~inside(hole, self.cx, self.cy)
        return m

    def accept(self, region, rings):
        """Pixel mask if the polygon lies inside the region (fine grid) and on free core."""
        m = self.pixels(rings)
        if m.sum() < 3 or not (self.ok_fn(region)(self.cy[m], self.cx[m])).all():
            return None
        fy = (np.arange(N * FINE) + 0.5) / FINE
        lo, hi = np.floor(rings[0].min(0) * FINE).astype(int), np.ceil(
            rings[0].max(0) * FINE).astype(int)
        gy, gx = np.meshgrid(fy[lo[1]:hi[1]], fy[lo[0]:hi[0]], indexing="ij")
        fm = inside(rings[0], gx, gy)
        for hole in rings[1:]:
            fm &= ~inside(hole, gx, gy)
        if not (self.L.region[lo[1]:hi[1], lo[0]:hi[0]][fm] == region).all():
            return None
        return m

    def draw(self, region, size, hole=None):
        """One polygon of about ``size`` pixels in ``region``: list of rings, pixel mask."""
        ok = self.ok_fn(region)
        for attempt in range(30):
            if hole is None:
                cand = np.argwhere((self.core == region) & self.free)
                if len(cand) == 0:
                    return None, None
                cy, cx = cand[self.rng.integers(len(cand))] + self.rng.uniform(.2, .8, 2)
                rings = [star(self.rng, cy, cx, 1.15 * np.sqrt(size / np.pi) + .5, ok)]
            else:
                _, cy, cx, rr = hole
                a = np.linspace(0, 2 * np.pi, 17)[:-1]
                hole_r = rr + 2.5
                inner = np.round(np.c_[cx + hole_r * np.cos(a), cy + hole_r * np.sin(a)], 3)
                rings = [star(self.rng, cy, cx, rr + 10 - attempt / 5, ok, r_min=rr + 3.2), inner]
            m = self.accept(region, rings)
            if m is not None:
                grown = m.copy()                             # keep polygons 1 px apart
                grown[1:] |= m[:-1]
                grown[:-1] |= m[1:]
                grown[:, 1:] |= grown[:, :-1].copy()
                grown[:, :-1] |= grown[:, 1:].copy()
                self.free &= ~grown
                return rings, m
        return None, None


# Labelled pixels and polygon counts per class: Table 2 (train) and Table 3 (test), scaled.
TRAIN = {1: (950, 28), 2: (450, 14), 3: (1150, 22), 5: (70, 8), 6: (410, 16),
         7: (1190, 30), 10: (100, 8), 11: (940, 18)}
TEST = {1: (1900, 14), 2: (170, 4), 3: (420, 6), 5: (50, 3), 6: (60, 3),
        7: (400, 8), 10: (30, 3), 11: (240, 4)}


def split_regions(L, D, rng):
    """Assign each labelled region with interior pixels to 'train' or 'test'."""
    area = np.bincount(D.core[D.core >= 0], minlength=len(L.labels))
    split = {}
    for code in TRAIN:
        regs = [r for r in range(len(L.labels)) if L.labels[r] == code and area[r] >= 4
                and L.kinds[r] not in ("road", "riparian")]
        rng.shuffle(regs)
        if code == 1:
            split.update({L.town[0]: "test", L.town[1]: "train", L.town[2]: "train"})
            continue
        if code == 11:                                       # test: one lake, one reach
            test = [next(r for r in regs if L.kinds[r] == k) for k in ("lake", "river")]
        else:
            test = regs[:max(2, int(round(len(regs) * (0.4 if len(regs) < 12 else 0.3))))]
        split.update({r: ("test" if r in test else "train") for r in regs})
    for parent, *_ in L.clearings[:3]:
        split[parent] = "train"                            # forest rings with a hole
    return split, area


def draw_all(L, D, rng):
    """Training and test polygons: {split: [(code, [parts of rings], mask)]}."""
    split, area = split_regions(L, D, rng)
    out = {"train": [], "test": []}
    for name, table in (("train", TRAIN), ("test", TEST)):
        for code, (target, count) in table.items():
            regs = [r for r, s in split.items() if s == name and L.labels[r] == code]
            got, records = 0, out[name]
            if name == "train" and code in (3, 2):          # ring polygons around clearings
                for c in L.clearings[:3]:
                    if L.labels[c[0]] == code:
                        rings, m = D.draw(c[0], 0, hole=c)
                        if rings is not None:
                            records.append((code, [rings], m))
                            got += m.sum()
            for k in range(300):
                n_done = sum(1 for r in records if r[0] == code)
                if n_done >= count and (got >= 0.9 * target or n_done >= 1.5 * count):
                    break
                n_left = max(count - n_done, 1)
                size = max(4, (target - got) / n_left * rng.lognormal(0, .4))
                weights = np.array([area[r] for r in regs], float) ** .5
                r = regs[rng.choice(len(regs), p=weights / weights.sum())]
                rings, m = D.draw(r, size)
                if rings is None:
                    continue
                if name == "train" and code == 11 and n_left == count:  # one 2-part record
                    rings2, m2 = D.draw(r, size)
                    if rings2 is not None:
                        records.append((code, [rings, rings2], m | m2))
                        got += (m | m2).sum()
                        continue
                records.append((code, [rings], m))
                got += m.sum()
    return out


def write_shapefile(path, records):
    """POLYGON shapefile (outer rings clockwise, holes counter-clockwise) + .prj."""
    def oriented(ring, clockwise):
        x, y = to_map(ring[:, 0], ring[:, 1])
        area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)  # > 0: counter-clockwise
        pts = [(round(a, 2), round(b, 2)) for a, b in zip(x, y)]
        if (area < 0) != clockwise:
            pts = pts[::-1]
        return pts + pts[:1]
    with shapefile.Writer(path, shapeType=shapefile.POLYGON) as w:
        w.field("code", "N", 4, 0)
        w.field("id", "N", 6, 0)
        for k, (code, parts, _) in enumerate(records, 1):
            w.poly([oriented(r, i == 0) for rings in parts for i, r in enumerate(rings)])
            w.record(code, k)
    with open(path[:-4] + ".dbf", "r+b") as f:                # pin the DBF "last update"
        f.seek(1)                                            # date: reruns byte-identical
        f.write(bytes([118, 12, 31]))
    with open(path[:-4] + ".prj", "w") as f:
        f.write(PRJ)


def main():
    rng = np.random.default_rng(SEED)
    L = build_landscape(rng)
    images = render(L, rng)
    data = np.clip(np.rint(images), 1, 10000).astype(np.int16)
    data[-1, :, N - 3:, :2] = NODATA                          # a few nodata pixels (L3A gap)
    georef = GeoRef(transform=(X0, 10.0, 0.0, Y0, 0.0, -10.0), epsg=32631)
    names = []
    for t, date in enumerate(DATES):
        names.append(f"S2_L3A_{date.replace('-', '')}.tif")
        write_geotiff(os.path.join(OUT, names[-1]), data[t], georef, nodata=NODATA,
                      metadata={"date": date, "bands": ",".join(BANDS)})
    D = PolygonDrawer(L, rng)
    D.free[N - 6:, :6] = False                                 # keep clear of the nodata
    polys = draw_all(L, D, rng)
    for name in ("train", "test"):
        write_shapefile(os.path.join(OUT, f"{name}_polygons.shp"), polys[name])
        print(f"{name}: {len(polys[name])} polygons")
        for code, *_ in CLASSES:
            recs = [r for r in polys[name] if r[0] == code]
            pixels = sum(int(r[2].sum()) for r in recs)
            print(f"  {code:>2}: {len(recs):3d} polygons {pixels:6d} px")
    manifest = {
        "name": "sits_ref synthetic sample (31TCJ-like, 2018)",
        "description": "synthetic, generated by make_sample.py (seed 2018): a 2.56 km x 2.56 km "
                       "landscape with Sentinel-2 L3A-like monthly spectra; not real data",
        "images": names, "dates": DATES, "bands": BANDS, "scale": 0.0001,
        "train_polygons": "train_polygons.shp", "test_polygons": "test_polygons.shp",
        "class_field": "code",
        "classes": [{"code": c, "name": n, "color": col} for c, n, col in CLASSES]}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    if os.environ.get("SAMPLE_DEBUG"):                         # maps for a quick look
        np.savez_compressed(os.environ["SAMPLE_DEBUG"], images=data,
                            region_label=np.asarray(L.labels)[D.core.clip(0)] * (D.core >= 0),
                            label=np.asarray(L.labels)[L.region[::FINE, ::FINE]],
                            train=sum(r[2] * r[0] for r in polys["train"]),
                            test=sum(r[2] * r[0] for r in polys["test"]))


if __name__ == "__main__":
    main()
