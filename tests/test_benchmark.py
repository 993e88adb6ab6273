"""run_benchmark.py end to end: --quick on the sample, resume, bad input, report."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import run_benchmark
from sits_ref.benchmark import Benchmark
from sits_ref.dataset import load_dataset
from sits_ref.geotiff import read_info, read_window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data_sample", "manifest.json")
ALL = ["tempcnn", "cnn3d", "cnn2d", "spatiotempcnn", "rf_ctx", "rf_base"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    assert run_benchmark.main(["--quick", "--out", str(out)]) == 0
    with open(out / "results.json") as f:
        return out, json.load(f)


@pytest.mark.slow
def test_quick_run_writes_every_output(quick_run):
    out, results = quick_run
    assert results["schema"] == "sits_ref.results/1"
    assert list(results["models"]) == ALL and results["splits"] == ["val", "test"]
    assert (out / "table.md").read_text().startswith("| Class name | TempCNN | 3D-CNN |")
    for name in ALL:
        for split in ("val", "test"):
            assert (out / "confusion" / f"{name}_{split}.csv").exists()
        assert (out / "runs" / f"{name}_run0.json").exists()


@pytest.mark.slow
def test_quick_run_schema_and_scores_beat_chance(quick_run):
    _, results = quick_run
    n_classes = len(results["dataset"]["classes"])
    for name, model in results["models"].items():
        run = model["runs"][model["best_run"]]
        for split in ("val", "test"):
            ev = run[split]
            cm = np.array(ev["confusion_matrix"])
            assert cm.shape == (n_classes, n_classes) and cm.sum() == ev["n_pixels"]
            assert len(ev["f1"]) == n_classes
            # Cohen's kappa lies in [-1, 1] (below 0: worse than chance agreement)
            assert -1 <= ev["kappa"] <= 1 and 0 <= ev["overall_accuracy"] <= 1
        # chance macro-F1 with 8 classes is ~0.125; two epochs already beat it clearly
        assert run["val"]["macro_f1"] > 0.3, name
        assert model["inference_seconds"] > 0


@pytest.mark.slow
def test_quick_run_maps_are_georeferenced_like_the_input(quick_run):
    out, results = quick_run
    ds = load_dataset(SAMPLE)
    for name, model in results["models"].items():
        info = read_info(out / model["map"])
        assert info.georef.transform == ds.georef.transform
        assert info.georef.epsg == ds.georef.epsg == 32631
        assert (info.height, info.width, info.dtype) == (ds.height, ds.width, np.uint8)
        codes = np.unique(read_window(out / model["map"]))
        assert set(codes) <= set(ds.class_codes) | {0}
        conf = read_info(out / model["confidence"])
        assert conf.georef.transform == ds.georef.transform and conf.dtype == np.float32


def test_resume_skips_finished_runs(tmp_path, monkeypatch, capsys):
    args = ["--models", "tempcnn", "rf_base", "--runs", "2", "--epochs", "2",
            "--out", str(tmp_path)]
    calls = []
    original = Benchmark.run_one

    def crash_on_third(self, name, run):
        calls.append((name, run))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, name, run)

    monkeypatch.setattr(Benchmark, "run_one", crash_on_third)
    assert run_benchmark.main(args) == 130
    assert "rerun with --resume" in capsys.readouterr().err
    finished = json.loads((tmp_path / "runs" / "tempcnn_run1.json").read_text())
    assert not (tmp_path / "runs" / "rf_base_run0.json").exists()

    calls.clear()
    assert run_benchmark.main(args + ["--resume"]) == 0
    assert calls == [("rf_base", 0), ("rf_base", 1)]  # TempCNN runs were not redone
    assert "finished earlier, skipped (--resume)" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    # the run was loaded, not redone (the best run's scores are then re-computed from
    # its map, see test_map_rescored_equals_reported_scores_on_the_sample)
    resumed = results["models"]["tempcnn"]["runs"][1]
    unscored = ("val", "test", "scored_from")
    assert {k: v for k, v in resumed.items() if k not in unscored} == \
        {k: v for k, v in finished.items() if k not in unscored}


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    args = ["--models", "rf_base", "--runs", "1", "--quick", "--out", str(tmp_path)]
    assert run_benchmark.main(args) == 0
    assert run_benchmark.main(args + ["--resume", "--seed", "3"]) == 2
    assert "--resume with different settings" in capsys.readouterr().err


def test_dataset_without_test_polygons_reports_validation_only(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_benchmark.main(["--data", str(tiny_dataset), "--models", "tempcnn", "rf_base",
                               "--quick", "--out", str(out)]) == 0
    assert "no test polygons" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["splits"] == ["val"]
    assert "test" not in results["models"]["tempcnn"]["runs"][0]


def test_average_steps_option_reaches_training(tiny_dataset, tmp_path, monkeypatch):
    import sits_ref.benchmark as benchmark
    configs, train = [], benchmark.train_model
    monkeypatch.setattr(benchmark, "train_model", lambda model, data, val, config, **kw:
                        configs.append(config) or train(model, data, val, config, **kw))
    out = tmp_path / "out"
    assert run_benchmark.main(["--data", str(tiny_dataset), "--models", "tempcnn", "--quick",
                               "--average-steps", "3", "--out", str(out)]) == 0
    assert [c.average_steps for c in configs] == [3]
    assert json.loads((out / "results.json").read_text())["options"]["average_steps"] == 3


@pytest.mark.parametrize("argv, message", [
    (["--runs", "0"], "argument --runs: must be a positive integer, got 0"),
    (["--average-steps", "0"], "argument --average-steps: must be a positive integer, got 0"),
    (["--models", "resnet"], "argument --models: invalid choice: 'resnet'"),
    (["--device", "tpu"], "--device must be cpu or cuda"),
    (["--data", "/nonexistent/manifest.json"], "manifest not found"),
    (["--rgb-date", "2019-01-01"], "--rgb-date 2019-01-01: not a date of the series"),
    (["--figure-window", "200", "0", "100", "10"], "not inside the 256 x 256 grid"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "run_benchmark.py"), *argv,
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- one truth
# The scores in results.json are the delivered map's: re-score each map GeoTIFF against
# the rasterized test polygons (rasterize, tested pixel-exact against GDAL) and compare.

def _truth(ds, which):
    """Class index + 1 of every pixel of ``which`` polygons (0 outside), rasterized
    in one go (rasterize is tested pixel-exact against GDAL)."""
    from sits_ref.rasterize import rasterize
    from sits_ref.vectors import read_polygons
    polygons, _ = read_polygons(ds.polygon_files[which], ds.class_field, ds.class_codes)
    k = {code: i for i, code in enumerate(ds.class_codes)}
    return rasterize(((p.geometry, k[p.code] + 1) for p in polygons),
                     (ds.height, ds.width), ds.georef.transform, fill=0, dtype=np.int32)


def _rescored_confusion(map_path, manifest, which="test"):
    ds = load_dataset(manifest)
    truth = _truth(ds, which)
    mapped = read_window(map_path)[0]
    pred = np.zeros(256, np.int64)
    pred[ds.class_codes] = np.arange(len(ds.class_codes)) + 1
    sel = (truth > 0) & (mapped > 0)
    n = len(ds.class_codes)
    return np.bincount((truth[sel] - 1) * n + pred[mapped[sel]] - 1,
                       minlength=n * n).reshape(n, n)


@pytest.mark.slow
def test_map_rescored_equals_reported_scores_on_the_sample(quick_run):
    out, results = quick_run
    for name, model in results["models"].items():
        best = model["runs"][model["best_run"]]
        cm = _rescored_confusion(out / model["map"], SAMPLE)
        assert cm.tolist() == best["test"]["confusion_matrix"], name
        assert best["scored_from"] == "map"


@pytest.fixture
def absent_class_dataset(tiny_dataset, tmp_path):
    """The tiny dataset plus a third class listed in the manifest that has test
    polygons but no training polygon, and test polygons for the two others."""
    from conftest import edit_manifest, square, write_shapefile
    write_shapefile(tmp_path / "test.shp", [([square(6, 1, 3)], 1), ([square(18, 3, 3)], 2),
                                             ([square(8, 14, 3)], 3)])
    classes = json.loads(tiny_dataset.read_text())["classes"]
    edit_manifest(tiny_dataset, test_polygons="test.shp",
                  classes=classes + [{"code": 3, "name": "Water", "color": "#0080ff"}])
    return tiny_dataset


def test_map_rescored_equals_reported_scores_with_a_class_never_trained(
        absent_class_dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_benchmark.main(["--data", str(absent_class_dataset), "--quick",
                               "--models", *ALL, "--out", str(out)]) == 0
    assert "warning: " in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    for name, model in results["models"].items():
        best = model["runs"][model["best_run"]]
        cm = np.array(_rescored_confusion(out / model["map"], absent_class_dataset))
        assert cm.shape == (3, 3)
        assert cm.tolist() == best["test"]["confusion_matrix"], name
        # class 3 is in the reference of the test set: it counts in the macro-F1
        assert cm[2].sum() == 9
        if name.startswith("rf"):  # a forest gives the class it never saw probability 0
            assert set(np.unique(read_window(out / model["map"])).tolist()) <= {1, 2}


# ----------------------------------------------------------------------------- small data

def _one_polygon_per_class(manifest, tmp_path, size, extra=()):
    from conftest import edit_manifest, square, write_shapefile
    write_shapefile(tmp_path / "one.shp", [([square(1, 1, size)], 1),
                                            ([square(14, 2, size)], 2), *extra])
    edit_manifest(manifest, train_polygons="one.shp")


def test_one_polygon_per_class_runs_with_a_stated_policy(tiny_dataset, tmp_path, capsys):
    bow_tie = [(356050.0, 4835670.0), (356090.0, 4835630.0), (356090.0, 4835670.0),
               (356050.0, 4835630.0), (356050.0, 4835670.0)]
    _one_polygon_per_class(tiny_dataset, tmp_path, 5, extra=[([bow_tie], 1)])
    out = tmp_path / "out"
    assert run_benchmark.main(["--data", str(tiny_dataset), "--quick", "--models", *ALL,
                               "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1 empty, degenerate" in printed
    assert "class(es) 1 'Built up', 2 'Woodland' have a single training polygon " \
           "(polygons per class: 1: 1, 2: 1)" in printed
    assert "not independent" in printed
    results = json.loads((out / "results.json").read_text())
    for model in results["models"].values():
        val = model["runs"][0]["val"]
        # 5 px wide squares cut at 3.5 px: columns 4 and 5 of each (2 x 5 px) validate
        assert np.array(val["confusion_matrix"]).sum(axis=1).tolist() == [10, 10]


def test_empty_validation_set_runs_every_model(tiny_dataset, tmp_path):
    # one pixel per class: the cut leaves it to training, validation is empty
    _one_polygon_per_class(tiny_dataset, tmp_path, 1)
    out = tmp_path / "out"
    assert run_benchmark.main(["--data", str(tiny_dataset), "--quick", "--models", *ALL,
                               "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    for model in results["models"].values():
        assert model["runs"][0]["val"]["n_pixels"] == 0
        assert model["val_macro_f1_mean"] == 0.0


def test_score_map_reads_the_scores_from_the_map_file(tiny_dataset, tmp_path):
    """score_map scores whatever the GeoTIFF holds: a hand-made map with a known error."""
    from sits_ref.benchmark import Options, score_map
    from sits_ref.geotiff import write_geotiff
    ds = load_dataset(tiny_dataset)
    bench = Benchmark(ds, Options(data=str(tiny_dataset), out=str(tmp_path / "o"),
                                  models=["rf_base"]), log=lambda *a: None)
    classes = np.ones((ds.height, ds.width), np.uint8)
    classes[:, 12:] = 2                       # the truth: class 1 left, class 2 right
    px = bench.exp.pixels("val")
    wrong = px.index[px.y == 0][:3]           # 3 validation pixels of class 1 -> 2
    classes.ravel()[wrong] = 2
    write_geotiff(tmp_path / "map.tif", classes, ds.georef, nodata=0)
    scores = score_map(str(tmp_path / "map.tif"), px, ds.class_codes, ds.width)
    n1, n2 = int((px.y == 0).sum()), int((px.y == 1).sum())
    assert scores["confusion_matrix"] == [[n1 - 3, 3], [0, n2]]


# ----------------------------------------------------------------------------- report

LINK = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _links(report_path):
    return LINK.findall(open(report_path).read())


@pytest.mark.slow
def test_quick_run_writes_a_report_whose_pictures_all_exist(quick_run):
    out, results = quick_run
    links = _links(out / "report.md")
    for link in links:
        path = out / link
        assert not os.path.isabs(link) and path.exists(), link
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    text = (out / "report.md").read_text()
    assert (out / "table.md").read_text() in text              # Table 4, verbatim
    expected = {f"quicklooks/{m}_{kind}.png" for m in ALL for kind in ("map", "confidence")}
    expected.add("quicklooks/input_rgb_2018-07-08.png")         # the middle date
    if importlib.util.find_spec("matplotlib"):
        expected |= {f"figures/{m}_confusion.png" for m in ALL}
        expected |= {f"figures/{m}_training.png" for m in ALL[:4]}    # the CNNs
        expected |= {"figures/fig7_profiles.png", "figures/fig8_normalised_profiles.png",
                     "figures/fig9_maps.png"}
    assert set(links) == expected
    assert "| seed | 0 |" in text and "| torch |" in text


@pytest.mark.slow
def test_quick_run_profiles_are_the_training_polygons_pixels(quick_run):
    out, _ = quick_run
    profiles = json.loads((out / "profiles.json").read_text())
    ds = load_dataset(SAMPLE)
    truth = _truth(ds, "train")
    assert profiles["count"] == np.bincount(truth.ravel(), minlength=9)[1:].tolist()
    feats, _ = ds.read_features()                               # (T, F, H, W)
    ndvi = profiles["features"].index("NDVI")
    water = ds.class_names.index("Water")
    pixels = feats[:, ndvi][:, truth == water + 1]              # (T, N)
    assert np.allclose(profiles["mean"][water][ndvi], pixels.mean(axis=1), atol=1e-6)
    assert np.allclose(profiles["std"][water][ndvi], pixels.std(axis=1), atol=1e-6)


def _copy(out, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    for name in ("report.md", "figures", "quicklooks"):
        target = copy / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    return copy


@pytest.mark.slow
def test_report_is_rebuilt_from_the_output_folder(quick_run, tmp_path):
    copy = _copy(quick_run[0], tmp_path)
    proc = subprocess.run([sys.executable, "-m", "sits_ref.report", str(copy),
                           "--rgb-date", "2018-03-15", "--window", "10", "20", "64", "48"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    links = _links(copy / "report.md")
    assert "quicklooks/input_rgb_2018-03-15.png" in links
    assert all((copy / link).exists() for link in links)
    if importlib.util.find_spec("matplotlib"):
        assert "Rows 10-73, columns 20-67 of the scene." in (copy / "report.md").read_text()


@pytest.mark.slow
def test_report_without_matplotlib_says_so_in_one_line(quick_run, tmp_path):
    copy = _copy(quick_run[0], tmp_path)
    script = ("import sys; sys.modules['matplotlib'] = None\n"
              "from sits_ref.report import main; sys.exit(main([sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", script, str(copy)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stdout.splitlines() if "figures skipped" in line]
    assert len(skipped) == 1 and 'pip install -e ".[plots]"' in skipped[0]
    assert not (copy / "figures").exists()
    assert "Figures were skipped" in (copy / "report.md").read_text()
    assert all(link.startswith("quicklooks/") for link in _links(copy / "report.md"))


@pytest.mark.parametrize("extra, message", [
    ([], "results.json: not found"),
    (["--rgb-date", "2018-01-01"], "--rgb-date 2018-01-01: not a date of the series"),
    (["--window", "0", "0", "300", "10"], "--window [0, 0, 300, 10]: not inside"),
])
def test_report_cli_bad_input_exits_2(extra, message, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    if extra:          # a minimal results.json pointing at the sample
        ds = load_dataset(SAMPLE)
        (out / "results.json").write_text(json.dumps({"dataset": {
            "manifest": SAMPLE, "height": ds.height, "width": ds.width,
            "classes": []}, "models": {}}))
    proc = subprocess.run([sys.executable, "-m", "sits_ref.report", str(out), *extra],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "report.md").exists()
