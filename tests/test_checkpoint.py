"""Checkpoints: round trip, refusal of files that do not fit, nothing half-written."""
import numpy as np
import pytest
import torch

from sits_ref.checkpoint import load_checkpoint, save_checkpoint
from sits_ref.models import build_model

SMALL = dict(filters=8, hidden=16, dropout=0.2)   # a small TempCNN keeps the tests fast
FEATURES = ["B2", "B3", "B4"]
DATES = ["2018-02-15", "2018-03-15", "2018-04-15", "2018-05-15"]


def _saved(tmp_path):
    torch.manual_seed(0)
    kwargs = dict(SMALL, dropout=0.3)
    model = build_model("tempcnn", 3, 4, 2, **kwargs)
    model.train()
    model(torch.randn(8, 3, 4, 3, 3))          # move BN running stats away from defaults
    model.eval()
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, model, "tempcnn", kwargs, norm_mean=np.arange(3.0),
                    norm_std=np.ones(3), class_codes=[1, 11], class_names=["Built up", "Water"],
                    feature_names=FEATURES, extra={"best_f1": 0.9, "split": [1, 2]},
                    dates=DATES, pixel_size=10.0, class_colors=[(230, 0, 77), (0, 0, 255)])
    return model, path


def test_checkpoint_round_trip(tmp_path):
    model, path = _saved(tmp_path)
    raw = torch.load(path, weights_only=True)                # plain types + tensors only
    assert raw["model_name"] == "tempcnn"
    loaded, meta = load_checkpoint(path, n_features=3, n_dates=4, feature_names=FEATURES)
    x = torch.randn(2, 3, 4, 5, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    assert meta["class_codes"] == [1, 11] and meta["class_names"] == ["Built up", "Water"]
    np.testing.assert_array_equal(meta["norm_mean"], [0, 1, 2])
    assert meta["extra"] == {"best_f1": 0.9, "split": [1, 2]}
    assert "state_dict" not in meta
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]   # no temp file left


def test_checkpoint_mismatch_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    with pytest.raises(ValueError, match="n_features=3 but the data has 4"):
        load_checkpoint(path, n_features=4)
    with pytest.raises(ValueError, match="n_dates=4 but the data has 5"):
        load_checkpoint(path, n_dates=5)
    with pytest.raises(ValueError, match="feature_names"):
        load_checkpoint(path, feature_names=["B2", "B4", "B3"])
    with pytest.raises(ValueError, match="trained on dates 2018-02-15, .*the data has 2019"):
        load_checkpoint(path, dates=[d.replace("2018", "2019") for d in DATES])
    with pytest.raises(ValueError, match="trained on 10 m pixels, the data has 20 m"):
        load_checkpoint(path, pixel_size=20)
    _, meta = load_checkpoint(path, dates=DATES, pixel_size=10)
    assert meta["class_colors"] == [[230, 0, 77], [0, 0, 255]]

    raw = torch.load(path, weights_only=True)
    bad = dict(raw, model_kwargs=dict(raw["model_kwargs"], hidden=17))
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="state_dict does not fit"):
        load_checkpoint(str(tmp_path / "bad.pt"))

    bad = dict(raw, model_name="cnn2d")
    torch.save(bad, tmp_path / "bad2.pt")
    with pytest.raises(ValueError, match="state_dict does not fit"):
        load_checkpoint(str(tmp_path / "bad2.pt"))

    missing = {k: v for k, v in raw.items() if k != "class_codes"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="missing keys.*class_codes"):
        load_checkpoint(str(tmp_path / "missing.pt"))

    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a sits_ref checkpoint"):
        load_checkpoint(str(tmp_path / "other.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a sits_ref checkpoint"):
        load_checkpoint(str(tmp_path / "junk.pt"))


def test_save_checkpoint_validates_inputs(tmp_path):
    model = build_model("tempcnn", 3, 4, 2, **SMALL)
    args = dict(norm_mean=np.zeros(3), norm_std=np.ones(3), class_codes=[1, 2],
                class_names=["a", "b"], feature_names=FEATURES)
    with pytest.raises(TypeError, match="not a plain type"):
        save_checkpoint(str(tmp_path / "x.pt"), model, "tempcnn", SMALL,
                        **args, extra={"a": np.zeros(2)})
    with pytest.raises(ValueError, match="feature names"):
        save_checkpoint(str(tmp_path / "x.pt"), model, "tempcnn", SMALL,
                        **dict(args, feature_names=["B2"]))
    assert not any(tmp_path.iterdir())
