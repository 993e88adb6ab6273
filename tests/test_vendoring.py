"""Vendoring: every module can be copied out with the siblings the README names, and works.

``LIFT`` is the README's table "Lifting modules out": for each module, the sibling
modules it needs and the third-party packages it imports. The tests check that

* the table in README.md says exactly this (claims match the tests),
* each module's imports are exactly these (parsed from its source), and
* copied into an empty folder with only those siblings, each module imports and runs
  a small job in a fresh interpreter that cannot import ``sits_ref``, and loads no
  third-party package beyond its own. A module that needs no sibling is copied as a
  plain top-level file, the way one vendors a single file.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "sits_ref")
THIRD_PARTY = ("numpy", "torch", "tifffile", "shapefile", "matplotlib")  # shapefile = pyshp

# module: (sibling modules it imports, third-party packages it imports)
LIFT = {
    "atomic": ((), ()),
    "rasterize": ((), ("numpy",)),
    "indices": ((), ("numpy",)),
    "metrics": ((), ("numpy",)),
    "forest": ((), ("numpy",)),
    "segmentation": ((), ("numpy",)),
    "gapfill": ((), ("numpy",)),
    "vectors": ((), ("numpy", "shapefile")),
    "models": ((), ("torch",)),
    "geotiff": (("atomic",), ("numpy", "tifffile")),
    "png": (("atomic",), ("numpy",)),
    "figures": (("atomic",), ("matplotlib", "numpy")),
    "quicklook": (("geotiff", "png"), ("numpy",)),
    "report": (("atomic", "dataset", "figures", "geotiff", "quicklook", "samples", "vectors"),
               ("numpy",)),
    "products": (("geotiff", "indices"), ("numpy",)),
    "fast": (("models",), ("torch",)),
    "distributed": ((), ("torch",)),
    "train": (("distributed", "metrics"), ("numpy", "torch")),
    "checkpoint": (("atomic", "models"), ("numpy", "torch")),
    "context": (("forest", "segmentation"), ("numpy",)),
    "samples": (("rasterize", "vectors"), ("numpy",)),
    "dataset": (("gapfill", "geotiff", "indices", "products", "vectors"), ("numpy",)),
    "predict": (("checkpoint", "dataset", "distributed", "fast", "geotiff", "indices",
                 "quicklook"), ("numpy", "torch")),
    "benchmark": (("atomic", "checkpoint", "context", "distributed", "fast", "forest",
                   "geotiff", "metrics", "models", "predict", "samples", "train"),
                  ("numpy", "torch")),
}

# A small job per module, run on the vendored copy ``m`` (numpy imported as np).
SMOKE = {
    "atomic": """
        m.write_json("a.json", {"x": 1})
        assert open("a.json").read() == '{\\n "x": 1\\n}' and os.listdir(".") == ["a.json"]
    """,
    "rasterize": """
        square = {"type": "Polygon", "coordinates": [[(0, 0), (2, 0), (2, -2), (0, -2), (0, 0)]]}
        out = m.rasterize([(square, 7)], (3, 3), (0.0, 1.0, 0.0, 0.0, 0.0, -1.0))
        assert out.tolist() == [[7, 7, 0], [7, 7, 0], [0, 0, 0]], out   # pixel centres inside
    """,
    "indices": """
        assert np.isclose(m.ndvi(np.float32(0.5), np.float32(0.1)), 0.4 / 0.6)
    """,
    "metrics": """
        assert m.macro_f1(np.array([[3, 1], [0, 4]])) == (6 / 7 + 8 / 9) / 2
    """,
    "forest": """
        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 4)); y = (X[:, 0] > 0).astype(int)
        rf = m.RandomForest(n_trees=10, random_state=0).fit(X, y)
        assert (rf.predict(X) == y).mean() > 0.95
    """,
    "segmentation": """
        seg = m.slic(np.random.default_rng(0).random((20, 20, 3)), n_segments=4)
        assert seg.shape == (20, 20) and 2 <= len(np.unique(seg)) <= 4
    """,
    "vectors": """
        import json
        doc = {"type": "FeatureCollection",
               "crs": {"type": "name", "properties": {"name": "EPSG:32631"}},
               "features": [{"type": "Feature", "properties": {"code": 3}, "geometry": {
                   "type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]}}]}
        json.dump(doc, open("p.geojson", "w"))
        polygons, epsg = m.read_polygons("p.geojson", "code")
        assert epsg == 32631 and [p.code for p in polygons] == [3]
    """,
    "models": """
        import torch
        out = m.build_model("cnn3d", 3, 4, 5).eval()(torch.randn(1, 3, 4, 6, 6))
        assert out.shape == (1, 5, 6, 6)
    """,
    "geotiff": """
        ref = m.GeoRef((300000.0, 10.0, 0.0, 4900000.0, 0.0, -10.0), 32631)
        m.write_geotiff("a.tif", np.arange(12, dtype=np.int16).reshape(3, 4), ref)
        assert m.read_window("a.tif", (1, 1, 2, 2)).tolist() == [[[5, 6], [9, 10]]]
        assert m.read_info("a.tif").georef.epsg == 32631
    """,
    "gapfill": """
        filled, ok = m.fill_gaps(np.array([1.0, 0.0, 3.0])[:, None, None],
                                 np.array([[True], [False], [True]]), [0, 1, 2])
        assert filled.ravel().tolist() == [1, 2, 3] and ok.tolist() == [True]
    """,
    "products": """
        import vend.geotiff as g
        os.makedirs("S2B_31TCJ_20180415_0_L2A")
        ref = g.GeoRef((300000.0, 10.0, 0.0, 4900000.0, 0.0, -10.0), 32631)
        g.write_geotiff("S2B_31TCJ_20180415_0_L2A/B02.tif", np.full((2, 2), 700, np.int16), ref)
        p = m.find_products(".", bands=["B2"])
        assert (p.layout, p.dates) == ("per_band", ["2018-04-15"]) and p.read()[1].all()
    """,
    "png": """
        m.write_png("a.png", np.array([[0, 255]], np.uint8))
        data = open("a.png", "rb").read()
        assert data[:8] == b"\\x89PNG\\r\\n\\x1a\\n" and data[16:24] == bytes([0, 0, 0, 2, 0, 0, 0, 1])
    """,
    "figures": """
        m.confusion_figure("cm.png", {"test": [[3, 1], [0, 2]]}, ["a", "b"], "M")
        assert open("cm.png", "rb").read()[16:24] == bytes([0, 0, 2, 88, 0, 0, 2, 88])  # 600 px
    """,
    "quicklook": """
        assert m.block_mode(np.array([[1, 2], [2, 0]], np.uint8), 2).tolist() == [[2]]
    """,
    "report": """
        assert m.to_markdown([["Class", "A"], ["Water", "0.9"]]).splitlines()[2] == "| Water | 0.9 |"
    """,
    "fast": """
        import torch, vend.models as models
        model = models.build_model("tempcnn", 3, 4, 5).eval()
        x = torch.randn(2, 3, 4, 5, 6)
        with torch.no_grad():
            assert (m.fast_model(model)(x) - model(x)).abs().max() < 1e-5
    """,
    "train": """
        import torch
        class PixelLinear(torch.nn.Module):      # a stand-in model: one linear layer per pixel
            n_classes, halo = 2, 0
            def __init__(self):
                super().__init__(); self.linear = torch.nn.Linear(1, 2)
            def forward(self, x, where=None):
                z = self.linear(x[:, :, 0].permute(0, 2, 3, 1))
                return z[where] if where is not None else z.permute(0, 3, 1, 2)
        torch.manual_seed(0)
        X = torch.randn(64, 1, 1, 1, 1); Y = (X[:, 0, 0] > 0).long()
        config = m.TrainConfig(epochs=30, min_steps=5, batch_size=16, lr=0.05)
        history = m.train_model(PixelLinear(), (X, Y), (X, Y), config, log=lambda line: None)
        assert history["best_f1"] > 0.9
    """,
    "distributed": """
        import torch
        group = m.from_environment()                 # no torchrun: a group of one
        assert (group.size, group.main) == (1, True)
        assert group.share(torch.arange(4)).tolist() == [0, 1, 2, 3] and group.broadcast(7) == 7
    """,
    "checkpoint": """
        import vend.models as models
        model = models.build_model("tempcnn", 2, 3, 2).eval()
        m.save_checkpoint("m.pt", model, "tempcnn", {}, [0, 0], [1, 1], [1, 2], ["a", "b"],
                          ["B2", "B3"])
        loaded, meta = m.load_checkpoint("m.pt", n_features=2)
        assert meta["class_codes"] == [1, 2]
    """,
    "context": """
        hist = m.label_histograms(np.array([0, 1, 1]), np.array([0, 0, 1]), 2, 2)
        assert hist.tolist() == [[0.5, 0.5], [0.0, 1.0]]
    """,
    "samples": """
        rows, labels = m.oversample(np.array([0, 0, 0, 1, 1, 1, 2]), seed=0)
        assert np.bincount(labels).tolist() == [3, 3, 3]
    """,
}


def _imports(module):
    """(sibling modules, third-party packages) imported by sits_ref/<module>.py."""
    tree = ast.parse(open(os.path.join(PACKAGE, module + ".py")).read())
    siblings, packages = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            siblings.update([node.module] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and node.module:
            packages.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            packages.update(a.name.split(".")[0] for a in node.names)
    return siblings, packages & set(THIRD_PARTY)


def _closure(module):
    """The module and every sibling it needs, directly or not."""
    todo, seen = [module], set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(LIFT[name][0])
    return seen


def _readme_table():
    """{module: (siblings, third-party)} from the README's 'Lifting modules out' table."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Lifting modules out", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`sits_ref/(\w+)\.py`", cells[0])
        if match:
            listed = [re.findall(r"`(\w+)(?:\.py)?`", cell) for cell in cells[2:4]]
            table[match.group(1)] = tuple(tuple(sorted(names)) for names in listed)
    return table


def test_every_module_is_in_the_table():
    modules = {f[:-3] for f in os.listdir(PACKAGE) if f.endswith(".py") and f != "__init__.py"}
    assert modules == set(LIFT)


def test_readme_table_says_what_the_tests_check():
    expected = {name: (tuple(sorted(sib)), tuple(sorted(pkg)))
                for name, (sib, pkg) in LIFT.items()}
    assert _readme_table() == expected


@pytest.mark.parametrize("module", sorted(LIFT))
def test_imports_are_the_declared_ones(module):
    siblings, packages = _imports(module)
    assert siblings == set(LIFT[module][0]), "siblings"
    assert packages == set(LIFT[module][1]), "third-party packages"


@pytest.mark.parametrize("module", sorted(SMOKE))
def test_module_runs_when_copied_out(module, tmp_path):
    closure = _closure(module)
    alone = len(closure) == 1
    folder = tmp_path if alone else tmp_path / "vend"
    folder.mkdir(exist_ok=True)
    if not alone:
        (folder / "__init__.py").write_text("")
    for name in closure:
        shutil.copy(os.path.join(PACKAGE, name + ".py"), folder)
    work = tmp_path / "work"
    work.mkdir()
    allowed = set(LIFT[module][1]) | {p for n in closure for p in LIFT[n][1]}
    if "matplotlib" in allowed:
        pytest.importorskip("matplotlib")     # the [plots] extra
    script = "\n".join([
        "import os, sys",
        "sys.modules['sits_ref'] = None          # importing sits_ref now fails",
        f"sys.path.insert(0, {str(tmp_path)!r})",
        "import numpy as np",
        f"import {module if alone else 'vend.' + module} as m",
        textwrap.dedent(SMOKE[module]),
        f"loaded = {{p for p in {THIRD_PARTY!r} if p in sys.modules}} - {{'numpy'}}",
        f"assert loaded <= {allowed!r}, loaded",
        "print('ok')",
    ])
    result = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
