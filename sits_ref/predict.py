"""Whole-scene inference, block by block, into georeferenced GeoTIFF maps.

The scene is streamed in full-width row bands: each band (plus ``halo`` rows above
and below) is read once, so a stripped GeoTIFF decodes each strip about once, and is
cut into ``block``-wide column windows. Patch CNNs are fully convolutional: each
window is classified with a halo of ``model.halo`` pixels (the spatial receptive
radius) in one pass and the halo is cropped, so the blocked map equals the
whole-image map (never a 32 x 32 window per pixel). Pixel models (TempCNN, the
forest) take the window's pixels as one batch. Outputs are memory-mapped GeoTIFFs and
the band height follows a memory budget (:func:`band_rows`), so memory is set by the
scene width and the block size, not by the scene.

Outputs, georeferenced exactly like the input: a uint8 class map (class codes, 0 =
nodata, colour table and class names) and a float32 confidence map (the winning
class probability); the command line adds a PNG quicklook of each
(:mod:`sits_ref.quicklook`).

Command line (applies a checkpoint saved by :mod:`sits_ref.train` to a scene)::

    python -m sits_ref.predict --model run/tempcnn.pt --data manifest.json --out map.tif
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from .distributed import Group, from_environment
from .fast import fast_model
from .geotiff import create_geotiff, open_for_update
from .indices import add_indices
from .quicklook import class_map_quicklook, confidence_quicklook


class TorchClassifier:
    """A trained CNN plus its normalisation: features (T, F, h, w) -> probabilities.
    Predicts with the model's fast twin (:func:`sits_ref.fast.fast_model`: the same
    probabilities up to float rounding, made once from the trained weights).

    Args:
        model: a :mod:`sits_ref.models` network (input (N, F, T, h, w)).
        mean, std: per-feature normalisation (F,), fitted on the training pixels.
    """

    def __init__(self, model: torch.nn.Module, mean, std, device: str = "cpu"):
        self.model = fast_model(model.to(device).eval())
        self.halo = int(model.halo)
        self.device = device
        self.mean = torch.as_tensor(np.asarray(mean, np.float32)).view(1, -1, 1, 1, 1)
        self.std = torch.as_tensor(np.asarray(std, np.float32)).view(1, -1, 1, 1, 1)

    @torch.inference_mode()
    def proba(self, feats: np.ndarray, window=None) -> np.ndarray:
        """(T, F, h, w) raw features -> (K, h, w) float32 class probabilities (the
        window's place in the scene is not needed)."""
        x = torch.from_numpy(feats).permute(1, 0, 2, 3)[None]  # (1, F, T, h, w), a view
        x = self.model.prepare(x)           # our own copy, in the layout the model reads
        x = x.sub_(self.mean).div_(self.std).to(self.device)   # normalised in place
        return torch.softmax(self.model(x)[0], dim=0).float().cpu().numpy()


class ForestClassifier:
    """A fitted :class:`sits_ref.forest.RandomForest` on per-pixel stacked features
    (F * T values, feature-major).

    The forest was fitted on class indices 0..K-1 but knows only the classes that had
    training pixels (``forest.classes_``); :meth:`proba` returns all ``n_classes``
    columns in manifest order, 0 for a class it never saw.
    """

    halo = 0

    def __init__(self, forest, n_classes: int):
        self.forest = forest
        self.n_classes = n_classes

    def proba(self, feats: np.ndarray, window=None) -> np.ndarray:
        """(T, F, h, w) features -> (K, h, w) probabilities."""
        t, f, h, w = feats.shape
        x = feats.transpose(2, 3, 1, 0).reshape(h * w, f * t)
        out = np.zeros((self.n_classes, h * w), np.float32)
        out[self.forest.classes_] = self.forest.predict_proba(x).T
        return out.reshape(-1, h, w)


def blocks(height: int, width: int, block: int, rows: int | None = None):
    """Row-major (row0, col0, h, w) windows tiling the grid: ``rows`` (default
    ``block``) rows by ``block`` columns."""
    rows = rows or block
    for r in range(0, height, rows):
        for c in range(0, width, block):
            yield r, c, min(rows, height - r), min(block, width - c)


def with_halo(window, halo: int, height: int, width: int):
    """Window grown by ``halo`` pixels, clipped to the grid, and the offset of the
    original window inside it."""
    r, c, h, w = window
    r0, c0 = max(r - halo, 0), max(c - halo, 0)
    r1, c1 = min(r + h + halo, height), min(c + w + halo, width)
    return (r0, c0, r1 - r0, c1 - c0), (r - r0, c - c0)


# Peak bytes per (pixel, date, band) value of a full-width row band of 2-byte files
# (int16 / uint16, as Sentinel-2's): the band being classified is held as read while the
# next one is read (each file's strips, then stacked, and a validity mask); floats,
# gap-filling and features are computed per column block, never for the whole band.
# Measured: peak memory (VmHWM) grows by 11 bytes per band value between 37- and
# 74-row bands of a 10980-wide scene of 11 dates x 10 bands.
READ_BYTES_PER_VALUE = 12
READ_BUDGET_MB = 768   # default memory for reading row bands (not the model's)


def band_rows(classifier, dataset, block: int, budget_mb: float = READ_BUDGET_MB) -> int:
    """Height of the full-width row bands: at most ``block``, and small enough that
    reading a band (its rows + 2 halo rows, full width) takes about ``budget_mb``.

    For a 10980-wide tile of 11 dates x 10 bands a band row costs ~13.8 MiB, so the
    default budget gives 49-row bands for the patch CNNs (55 rows read: 49 + 2 x 3
    halo rows), 55 for the pixel models; peak memory then depends on the width and
    on ``block`` (the model's working set), never on the height of the scene. With
    the auto-context forest the height also divides its context square (blocks must
    lie inside one square).
    """
    per_row = (dataset.width * len(dataset.observation_dates) * len(dataset.bands)
               * READ_BYTES_PER_VALUE)
    rows = int(budget_mb * 2 ** 20 // per_row) - 2 * classifier.halo
    rows = max(1, min(block, rows))
    tile = _context_tile(classifier)
    if tile:
        rows = max(d for d in range(1, rows + 1) if tile % d == 0)
    return rows


def _context_tile(classifier) -> int | None:
    """Side of the squares a context classifier works in (blocks must not cross them)."""
    return getattr(classifier, "tile", None)


def band_window(classifier, dataset, row0: int, rows: int):
    """The full-width window read for the band of ``rows`` rows at ``row0``: grown by
    the classifier's halo rows (clipped to the grid); and the band's first row in it."""
    (r0, _, h, _), (dr, _) = with_halo((row0, 0, rows, dataset.width), classifier.halo,
                                       dataset.height, dataset.width)
    return (r0, 0, h, dataset.width), dr


def classify_band(classifier, dataset, row0: int, rows: int, block: int, raw=None):
    """Probabilities (K, rows, W) and validity (rows, W) of the full-width band of
    ``rows`` rows starting at ``row0``.

    The band is read once with ``halo`` rows above and below (:func:`band_window`;
    ``raw``: that read, :meth:`Dataset.read_raw`, if done already), as stored: stripped
    GeoTIFFs (full-width strips, as Theia's and ours) then decode every strip about
    once per scene, instead of once per block. Column blocks of ``block`` pixels are
    classified inside it, each with its halo columns, and cropped; their reflectances
    (gap-filled) and features (bands + indices, as :meth:`Dataset.read_features`) are
    computed block by block.
    """
    halo = classifier.halo
    window, dr = band_window(classifier, dataset, row0, rows)
    values, observed = raw if raw is not None else dataset.read_raw(window)
    r0, _, h, width = window
    proba, valid = None, np.empty((rows, width), bool)
    for _, c, _, w in blocks(rows, width, block, rows):
        (_, c0, _, gw), (_, dc) = with_halo((0, c, rows, w), halo, h, width)
        bands, ok = dataset.bands_from_raw(values[..., c0:c0 + gw], observed[..., c0:c0 + gw])
        part = classifier.proba(add_indices(bands, dataset.bands, axis=1), (r0, c0, h, gw))
        if proba is None:
            proba = np.empty((part.shape[0], rows, width), np.float32)
        proba[:, :, c:c + w] = part[:, dr:dr + rows, dc:dc + w]
        valid[:, c:c + w] = ok[dr:dr + rows, dc:dc + w]
    return proba, valid


# glibc's mallopt parameters (malloc.h) and the values :func:`keep_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 512 * 2 ** 20       # freed memory kept for reuse, at most
MMAP_FROM_BYTES = 64 * 2 ** 20         # only larger blocks are mapped (and unmapped) alone


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse rather than give it back to
    the system at once (as ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_``
    would). Inference allocates and frees blocks of up to tens of MB per window;
    memory given back must be page-faulted in again at its next use. On 2 cores the
    3D-CNN's fast twin ran at 141k px/s with this setting against 117k without, in
    alternating rounds in one process; end to end the difference was within the
    machine's noise.
    A process-wide setting: the command line sets it, a library caller may. Returns
    False, doing nothing, where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
                    and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_FROM_BYTES))
    except (OSError, AttributeError):
        return False


def _prefetched(read, windows):
    """``read(window)`` of each window in turn, the next one read in a background
    thread while the caller works on the current one (decoding frees the GIL)."""
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(read, windows[0]) if windows else None
        for k in range(len(windows)):
            done = pending.result()
            if k + 1 < len(windows):
                pending = pool.submit(read, windows[k + 1])
            yield done


def predict_scene(classifier, dataset, out_map, out_confidence=None, block: int = 512,
                  log=print, budget_mb: float = READ_BUDGET_MB, classes=None,
                  group=None) -> float:
    """Classify the whole scene; returns the wall time in seconds.

    The scene is streamed in full-width row bands (see :func:`band_rows` and
    :func:`classify_band`); the model sees ``rows`` x ``block`` windows plus halo.
    ``out_map`` gets class codes (uint8, 0 = nodata) with the colour table and class
    names of ``classes`` (code, name, color items; default the dataset's);
    ``out_confidence`` (optional) the winning probability (float32). Both appear only
    when complete (written under a temporary name, then renamed). ``group``
    (:mod:`sits_ref.distributed`; default one process): the processes sharing the
    scene, each classifying every ``group.size``-th band into the same files (they
    must see one file system: one machine); the files are those of one process.
    """
    group = group or Group()
    tile = _context_tile(classifier)
    if tile and tile % block:
        raise ValueError(f"block {block} must divide the {tile}-pixel context tile")
    rows = band_rows(classifier, dataset, block, budget_mb)
    classes = classes or dataset.classes
    codes = np.array([0] + [c.code for c in classes], np.uint8)
    starts = range(0, dataset.height, rows)[group.rank::group.size]
    start, never_valid = time.perf_counter(), 0
    with _scene_outputs(out_map, out_confidence, dataset, classes, group) as (class_map,
                                                                            confidence):
        heights = [min(rows, dataset.height - r) for r in starts]
        windows = [band_window(classifier, dataset, r, h)[0] for r, h in zip(starts, heights)]
        bands = zip(starts, heights, _prefetched(dataset.read_raw, windows))
        for k, (r, h, raw) in enumerate(bands, 1):
            proba, valid = classify_band(classifier, dataset, r, h, block, raw)
            class_map[r:r + h] = np.where(valid, codes[1 + proba.argmax(0)], 0)
            never_valid += int((~valid).sum())
            if confidence is not None:
                confidence[r:r + h] = np.where(valid, proba.max(0), 0)
            elapsed = time.perf_counter() - start
            if log and (k == len(starts) or k % max(1, len(starts) // 10) == 0):
                log(f"  inference rows {r + h}/{dataset.height}  {elapsed:.1f} s  "
                    f"ETA {elapsed / k * (len(starts) - k):.0f} s")
    if log and never_valid:
        log(f"  {never_valid} px without any valid observation: nodata (0) in the map")
    return time.perf_counter() - start


@contextlib.contextmanager
def _scene_outputs(out_map, out_confidence, dataset, classes, group):
    """Writable (class map, confidence or None) memmaps of the output files.

    The main process creates them under temporary names (:func:`create_geotiff`);
    with several processes the others open the same temporary files, and once every
    process has written its rows and left, the main process renames them.
    """
    specs = [(out_map, dict(dtype=np.uint8, nodata=0,
                            colormap={c.code: c.color for c in classes},
                            metadata={f"CLASS_{c.code}": c.name for c in classes})),
             (out_confidence, dict(dtype=np.float32,
                                   metadata={"DESCRIPTION": "probability of the predicted "
                                                            "class"}))]
    with contextlib.ExitStack() as stack:
        images = [stack.enter_context(create_geotiff(path, dataset.height, dataset.width,
                                                     georef=dataset.georef, **kw))
                  if path is not None and group.main else None for path, kw in specs]
        if group.size > 1:
            names = group.broadcast([None if i is None else i.filename for i in images])
            if not group.main:
                images = [None if n is None else open_for_update(n) for n in names]
        yield images
        for image in images:
            if image is not None:
                image.flush()
        del images
        group.barrier()                        # every process has written its rows


def _checkpoint_classes(meta):
    """Class table (code, name, color) recorded in a checkpoint; grey where a
    checkpoint has no colours."""
    from .dataset import ClassInfo
    colors = meta.get("class_colors") or [(128, 128, 128)] * len(meta["class_codes"])
    return [ClassInfo(code, name, tuple(color)) for code, name, color
            in zip(meta["class_codes"], meta["class_names"], colors)]


def _model_for(args, dataset):
    """(model, meta, classes) of the checkpoint, checked against the dataset."""
    from .checkpoint import load_checkpoint
    own_dates = not args.model_dates
    model, meta = load_checkpoint(args.model, feature_names=dataset.feature_names,
                                  n_dates=len(dataset.dates) if own_dates else None,
                                  dates=dataset.dates if own_dates else None,
                                  pixel_size=abs(dataset.georef.transform[1]))
    if args.model_dates:
        if not meta.get("dates"):
            raise ValueError(f"{args.model}: the checkpoint records no dates")
        dataset.set_dates(meta["dates"])
    if dataset.classes and list(meta["class_codes"]) != dataset.class_codes:
        raise ValueError(f"{args.model}: trained for classes {meta['class_codes']}, "
                         f"dataset has {dataset.class_codes}")
    return model, meta, dataset.classes or _checkpoint_classes(meta)


def _outputs(args, datasets) -> list[tuple[str, str]]:
    """(class map, confidence) paths per dataset: ``--out`` (and ``--confidence``) for
    one; for several, OUT/NAME_map.tif and OUT/NAME_confidence.tif, NAME the manifest's
    file name without .json or the product folder's name."""
    if len(datasets) == 1:
        conf = args.confidence or os.path.splitext(args.out)[0] + "_confidence.tif"
        return [(args.out, conf)]
    if args.confidence:
        raise ValueError("--confidence names one file: with several --data, --out is a "
                         "folder and the confidence maps go there")
    names = [os.path.splitext(os.path.basename(os.path.normpath(d)))[0] for d in args.data]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--data: several inputs named {', '.join(twice)}; their maps "
                         f"would share a file name in {args.out}")
    return [(os.path.join(args.out, f"{n}_map.tif"), os.path.join(args.out,
                                                                 f"{n}_confidence.tif"))
            for n in names]


def _predict_tile(args, dataset, model, meta, classes, paths, group, log) -> str:
    """Map one scene (shared by ``group``), then its quicklooks; a line saying so."""
    out_map, conf = paths
    classifier = TorchClassifier(model, meta["norm_mean"], meta["norm_std"], args.device)
    seconds = predict_scene(classifier, dataset, out_map, conf, block=args.block,
                            budget_mb=args.memory, classes=classes, group=group, log=log)
    if not group.main:
        return ""
    looks = [os.path.splitext(path)[0] + ".png" for path in paths]
    class_map_quicklook(out_map, looks[0], {c.code: c.color for c in classes})
    confidence_quicklook(conf, looks[1])
    return (f"wrote {out_map} and {conf} ({dataset.height} x {dataset.width} px, "
            f"{seconds:.1f} s), quicklooks {looks[0]} and {looks[1]}")


def main(argv=None) -> int:
    """The command line; under torchrun, the tiles (or, for fewer tiles than processes,
    the row bands of each tile) are shared by the processes."""
    from .dataset import DatasetError, load_dataset

    parser = argparse.ArgumentParser(
        prog="python -m sits_ref.predict",
        description="Apply a saved sits_ref CNN checkpoint to scenes (dataset manifests, "
                    "with or without polygons, or folders of Sentinel-2 products); write "
                    "a class map and a confidence map per scene.")
    parser.add_argument("--model", required=True, help="checkpoint (.pt) from training")
    parser.add_argument("--data", required=True, nargs="+",
                        help="dataset manifest(s) (JSON) or folder(s) of Sentinel-2 products")
    parser.add_argument("--model-dates", action="store_true",
                        help="gap-fill the series onto the dates the model was trained on")
    parser.add_argument("--out", required=True,
                        help="output class map GeoTIFF; with several --data, a folder")
    parser.add_argument("--confidence", help="output confidence GeoTIFF (default: "
                                             "OUT with _confidence before .tif)")
    parser.add_argument("--resume", action="store_true",
                        help="skip the scenes whose map and confidence already exist")
    parser.add_argument("--block", type=int, default=512,
                        help="model window width (and at most height) in pixels")
    parser.add_argument("--memory", type=float, default=READ_BUDGET_MB,
                        help="memory for reading one full-width row band, in MiB "
                             "(sets the band height)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    keep_freed_memory()
    group = from_environment(args.device)
    say = print if group.main else (lambda *a, **k: None)
    try:
        if args.block < 1 or args.memory <= 0:
            raise ValueError(f"--block and --memory must be positive, got {args.block}, "
                             f"{args.memory}")
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device available")
        datasets = [load_dataset(d) for d in args.data]
        models = [_model_for(args, ds) for ds in datasets]   # every input checked first
        outputs = _outputs(args, datasets)
        if len(datasets) > 1:
            os.makedirs(args.out, exist_ok=True)
    except (DatasetError, ValueError, OSError) as exc:
        say(f"error: {exc}", file=sys.stderr)
        return 2
    # Fewer tiles than processes, all on this machine: they share each tile's row bands
    # (one file written by all); otherwise each process maps whole tiles.
    one_machine = int(os.environ.get("LOCAL_WORLD_SIZE", group.size)) == group.size
    whole_tiles = len(datasets) >= group.size or not one_machine
    for i, (dataset, (model, meta, classes), paths) in enumerate(
            zip(datasets, models, outputs)):
        if args.resume and all(os.path.exists(p) for p in paths):
            say(f"{paths[0]}: exists, skipped (--resume)")
            continue
        if whole_tiles and i % group.size != group.rank:
            continue                                  # another process's tile
        sharing = Group() if whole_tiles else group
        log = print if sharing.main else None
        try:
            line = _predict_tile(args, dataset, model, meta, classes, paths, sharing, log)
        except ValueError as exc:        # e.g. a product file that cannot be decoded
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if line:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
