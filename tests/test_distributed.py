"""Training on 2 processes (torchrun, gloo on CPU, localhost only) equals one process.

The workers are started by ``python -m torch.distributed.run --standalone`` (torchrun),
as a user would; the single-process reference runs the same script without it.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL_CNNS = ["tempcnn", "cnn3d", "cnn2d", "spatiotempcnn"]

GRADIENTS = """
import sys
import torch
from sits_ref.distributed import from_environment
from sits_ref.models import build_model
from sits_ref.train import minibatch_loss

group = from_environment()
torch.set_num_threads(1)
out = {}
for name in sys.argv[2:]:
    g = torch.Generator().manual_seed(0)
    side = 1 if name == "tempcnn" else 6
    X = torch.randn(8, 4, 5, side, side, generator=g) * 3 + 1
    Y = torch.randint(0, 3, (8, side, side), generator=g)
    Y[torch.rand(Y.shape, generator=g) < 0.3] = -1            # sparse labels
    torch.manual_seed(1)
    model = build_model(name, 4, 5, 3)
    for layer in model.modules():                             # dropout off: same masks
        if isinstance(layer, torch.nn.modules.dropout._DropoutNd):
            layer.p = 0.0
    net = group.wrap(model, torch.device("cpu"))
    idx = group.share(torch.arange(8))
    loss, _, _ = minibatch_loss(net.train(), X[idx], Y[idx], group)
    loss.backward()
    out[name] = {k: p.grad.clone() for k, p in model.named_parameters()}
    out[name + "_running"] = {k: b.clone() for k, b in model.named_buffers()}
if group.main:
    torch.save(out, sys.argv[1])
"""


def _run(args, cwd, torchrun=False, timeout=300):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2"] if torchrun else [sys.executable]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.run(launcher + args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_processes_take_the_one_process_gradient_step(tmp_path):
    """Every CNN: the gradients of one minibatch split over 2 processes (each its half,
    loss scaled, BatchNorm statistics over both halves, DDP averaging) are those of
    the whole minibatch on one process, to float rounding; so are the BatchNorm
    running statistics."""
    script = tmp_path / "grads.py"
    script.write_text(GRADIENTS)
    _run([str(script), str(tmp_path / "one.pt"), *ALL_CNNS], tmp_path)
    _run([str(script), str(tmp_path / "two.pt"), *ALL_CNNS], tmp_path, torchrun=True)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for name in ALL_CNNS:
        scale = max(g.abs().max().item() for g in one[name].values())
        for key, grad in one[name].items():
            assert torch.allclose(two[name][key], grad, rtol=1e-4, atol=1e-6 * scale), \
                (name, key, (two[name][key] - grad).abs().max().item(), scale)
        for key, buffer in one[name + "_running"].items():
            assert torch.allclose(two[name + "_running"][key].double(), buffer.double(),
                                  rtol=1e-5, atol=1e-6), (name, key)


@pytest.mark.slow
def test_run_benchmark_under_torchrun_writes_once_and_matches_one_process(tiny_dataset,
                                                                         tmp_path):
    args = [os.path.join(ROOT, "run_benchmark.py"), "--data", str(tiny_dataset), "--models",
            "tempcnn", "cnn2d", "rf_base", "--runs", "1", "--epochs", "2", "--min-epochs", "2",
            "--min-steps", "3"]
    two = _run(args + ["--out", str(tmp_path / "two")], tmp_path, torchrun=True, timeout=600)
    assert two.stdout.count("dataset ") == 1                 # the main process alone logs
    assert two.stdout.count("[TempCNN run 1/1] epoch   1 |") == 1
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert list(results["models"]) == ["tempcnn", "cnn2d", "rf_base"]
    assert (tmp_path / "two" / "runs" / "cnn2d_run0.pt").exists()
    assert not [f for f in os.listdir(tmp_path / "two" / "runs") if f.endswith(".partial")]
    one = _run(args + ["--out", str(tmp_path / "one")], tmp_path)
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    # the forest is fitted by the main process alone: same seed, same forest, same map
    assert results["models"]["rf_base"]["runs"][0]["val"] == \
        single["models"]["rf_base"]["runs"][0]["val"]
    assert (tmp_path / "two" / "maps" / "rf_base_map.tif").read_bytes() == \
        (tmp_path / "one" / "maps" / "rf_base_map.tif").read_bytes()
    assert "dataset " in one.stdout


# ----------------------------------------------------------------------------- inference

SAMPLE = os.path.join(ROOT, "data_sample", "manifest.json")


@pytest.fixture
def tiles(tmp_path):
    """4 'tiles' (manifests reading the sample's images, no polygons) and a 3D-CNN
    checkpoint for them (random weights, the sample's statistics)."""
    from sits_ref.checkpoint import save_checkpoint
    from sits_ref.dataset import load_dataset
    from sits_ref.models import build_model
    doc = json.loads(open(SAMPLE).read())
    root = os.path.dirname(SAMPLE)
    doc["images"] = [os.path.join(root, image) for image in doc["images"]]
    for key in ("train_polygons", "test_polygons", "class_field"):
        doc.pop(key)
    paths = []
    for name in ("t31tcj", "t31tch", "t31tdj", "t31tdh"):
        (tmp_path / f"{name}.json").write_text(json.dumps(dict(doc, name=name)))
        paths.append(str(tmp_path / f"{name}.json"))
    ds = load_dataset(paths[0])
    torch.manual_seed(0)
    model = build_model("cnn3d", len(ds.feature_names), len(ds.dates), len(ds.classes)).eval()
    feats, _ = ds.read_features((0, 0, 64, 64))
    mean, std = feats.mean(axis=(0, 2, 3)), feats.std(axis=(0, 2, 3))
    save_checkpoint(tmp_path / "m.pt", model, "cnn3d", {}, mean, std, ds.class_codes,
                    ds.class_names, ds.feature_names, dates=ds.dates)
    return paths, str(tmp_path / "m.pt")


def _predict(args, cwd, torchrun=False):
    return _run(["-m", "sits_ref.predict", *args], cwd, torchrun=torchrun)


def _same_files(a, b, names):
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
def test_two_processes_share_one_tile_by_row_bands(tiles, tmp_path):
    paths, model = tiles
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    common = ["--model", model, "--data", paths[0], "--block", "64"]
    _predict(common + ["--out", str(tmp_path / "one" / "map.tif")], tmp_path)
    two = _predict(common + ["--out", str(tmp_path / "two" / "map.tif")], tmp_path,
                   torchrun=True)
    assert two.stdout.count("wrote ") == 1
    _same_files(tmp_path / "one", tmp_path / "two", ["map.tif", "map_confidence.tif"])
    assert sorted(os.listdir(tmp_path / "two")) == ["map.png", "map.tif",
                                                    "map_confidence.png",
                                                    "map_confidence.tif"]


@pytest.mark.slow
def test_two_processes_share_tiles_and_a_killed_run_resumes(tiles, tmp_path):
    """4 tiles on 2 processes: maps byte-identical to one process. A run killed after
    its first map leaves only finished maps under their names; --resume finishes the
    others."""
    import signal
    import time
    paths, model = tiles
    common = ["--model", model, "--data", *paths, "--block", "64"]
    _predict(common + ["--out", str(tmp_path / "one")], tmp_path)
    names = [f"{os.path.basename(p)[:-5]}_{kind}.tif" for p in paths
             for kind in ("map", "confidence")]

    out = tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc-per-node", "2", "-m", "sits_ref.predict", *common,
                             "--out", str(out)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while not (out.exists() and any(n.endswith("_map.tif") for n in os.listdir(out))):
        assert proc.poll() is None and time.time() < deadline, "no map before the kill"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)                # every process, mid-run
    proc.wait()
    finished = [n for n in names if (out / n).exists()]
    assert 0 < len(finished) < len(names)              # killed with work left
    _same_files(tmp_path / "one", out, finished)        # what is there is complete

    again = _predict(common + ["--out", str(out), "--resume"], tmp_path, torchrun=True)
    assert again.stdout.count("exists, skipped (--resume)") >= 1
    _same_files(tmp_path / "one", out, names)
