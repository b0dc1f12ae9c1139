"""Fast tests of the second-stage crop classifiers on synthetic crops (no data needed)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from inference.classifiers import (
    METHODS,
    SclArcClassifier,
    load_classifier,
    make_classifier,
    prepare_crops,
    read_card,
)
from inference.classifiers.augment import augment, dihedral
from inference.classifiers.base import batches, n_batches
from inference.classifiers.data import split_per_class
from inference.classifiers.losses import (
    arcface_logits,
    contrastive_pair_loss,
    nt_xent_three_views,
    supcon_label_level,
    weighted_bce_pixels,
)
from inference.classifiers.metrics import classification_report

SIZE = 24
TINY = {"input_size": SIZE, "epochs": 2, "batch_size": 8}


def synthetic(n_per_class: int = 6, channels: int = 1, seed: int = 0, sizes=None):
    """Three easy classes: horizontal line ("scratch"), blob ("dust"), wide faint patch
    ("stain"), on noise. Returns a list of (c, h, w) crops, labels and masks."""
    rng = np.random.default_rng(seed)
    crops, labels, masks = [], [], []
    for k, name in enumerate(("scratch", "dust", "stain")):
        for _ in range(n_per_class):
            h, w = sizes[rng.integers(len(sizes))] if sizes else (SIZE, SIZE)
            img = rng.normal(10, 2, (channels, h, w)).astype(np.float32)
            m = np.zeros((h, w), np.float32)
            r, c = h // 2 + rng.integers(-2, 3), w // 2 + rng.integers(-2, 3)
            if k == 0:
                m[r, 2:w - 2] = 1
            elif k == 1:
                yy, xx = np.ogrid[:h, :w]
                m[(yy - r) ** 2 + (xx - c) ** 2 <= 4] = 1
            else:
                m[h // 4:3 * h // 4, w // 4:3 * w // 4] = 1
            amp = 60.0 if k < 2 else 15.0
            img += amp * m[None] * np.linspace(1, 0.5, channels)[:, None, None]
            crops.append(img)
            labels.append(name)
            masks.append(m)
    return crops, labels, masks


def tiny_overrides(method: str) -> dict:
    kw = dict(TINY)
    if method == "003":
        kw.update(width=0.125, big_kernel=3, cls_epochs=2)
    return kw


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("channels", [1, 6])
def test_fit_predict_save_load(method, channels, tmp_path):
    crops, labels, masks = synthetic(channels=channels, sizes=[(20, 30), (24, 24), (31, 17)])
    clf = make_classifier(method, **tiny_overrides(method))
    clf.fit(crops, labels, masks if method == "003" else None, note="test")
    p = clf.predict_proba(crops)
    assert p.shape == (len(crops), 3)
    assert np.allclose(p.sum(1), 1, atol=1e-5) and (p >= 0).all()
    assert set(clf.predict(crops)) <= set(clf.classes)
    path = clf.save(tmp_path / f"m{method}")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").exists()
    card = read_card(path)
    assert card["method"] == method and card["in_channels"] == channels
    assert card["training"]["note"] == "test"
    clf2 = load_classifier(path)
    assert type(clf2) is type(clf) and clf2.classes == clf.classes
    np.testing.assert_allclose(clf2.predict_proba(crops), p, atol=1e-5)
    with pytest.raises(ValueError):
        clf.predict_proba(np.zeros((2, channels + 1, SIZE, SIZE), np.float32))


def test_no_pickle_in_saved_files(tmp_path):
    crops, labels, _ = synthetic()
    clf = make_classifier("ce", **TINY).fit(crops, labels)
    path = clf.save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    assert json.loads(path.with_suffix(".json").read_text())["format"]
    assert b"\x80\x04" not in path.read_bytes()[:16]  # not a pickle stream


def test_ce_learns_easy_classes():
    torch.manual_seed(0)
    crops, labels, _ = synthetic(n_per_class=10)
    clf = make_classifier("ce", input_size=SIZE, epochs=25, batch_size=10, lr=3e-3)
    clf.fit(crops, labels)
    test, tlab, _ = synthetic(n_per_class=10, seed=1)
    acc = np.mean(np.array(clf.predict(test)) == np.array(tlab))
    assert acc >= 0.8


def test_scl_arc_database_and_few_shot_registration(tmp_path):
    crops, labels, _ = synthetic(n_per_class=8)
    keep = [i for i, lab in enumerate(labels) if lab != "stain"]
    clf = make_classifier("scl-arc", input_size=SIZE, epochs=15, batch_size=8, lr=2e-3)
    assert isinstance(clf, SclArcClassifier)
    clf.fit([crops[i] for i in keep], [labels[i] for i in keep])
    assert clf.classes == ["dust", "scratch"] and len(clf.db_labels) == len(keep)
    new = [c for c, lab in zip(crops, labels, strict=True) if lab == "stain"]
    clf.register_class("stain", new[:3])  # few-shot: k = 3 examples
    assert clf.classes == ["dust", "scratch", "stain"]
    p = clf.predict_proba(new[3:])
    assert p.shape == (len(new) - 3, 3)
    # a registered example is most similar to its own class
    assert clf.predict(new[:3]) == ["stain"] * 3
    path = clf.save(tmp_path / "fs")
    clf2 = load_classifier(path)
    assert clf2.classes == clf.classes
    np.testing.assert_allclose(clf2.predict_proba(new), clf.predict_proba(new), atol=1e-5)
    e = clf.embed(new)
    assert e.shape == (len(new), clf.config.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)


def test_scl_arc_db_shots():
    crops, labels, _ = synthetic(n_per_class=6)
    clf = make_classifier("002", input_size=SIZE, epochs=1, batch_size=8, db_shots=2)
    clf.fit(crops, labels)
    assert len(clf.db_labels) == 6


def test_graph_options_and_psic_segment():
    crops, labels, masks = synthetic()
    g = make_classifier("000", **TINY, graph=False)
    g.fit(crops, labels)
    assert g.predict_proba(crops[:1]).shape == (1, 3)
    g2 = make_classifier("000", **TINY, pretrain=False, d=8)
    g2.fit(crops, labels)
    assert g2.net.d == 8
    psic = make_classifier("003", **tiny_overrides("003"))
    psic.fit(crops, labels)  # no masks: pseudo-masks
    assert psic.info["mask_source"].startswith("pseudo")
    seg = psic.segment(crops[:2])
    assert seg.shape == (2, SIZE, SIZE) and ((seg >= 0) & (seg <= 1)).all()
    with pytest.raises(ValueError):
        make_classifier("003", input_size=30)


def test_prepare_crops_pads_to_square_and_keeps_channels():
    a = np.zeros((6, 10, 40), np.float32)
    a[:, 4:6, :] = 100
    x = prepare_crops([a, np.ones((6, 16, 16), np.float32)], 16)
    assert x.shape == (2, 6, 16, 16)
    assert x[0, :, 0].max() < 1  # padded rows take the (zero) median, not the bright line
    assert x[0, :, 8].max() > 10  # the line survives in the middle row band
    g = prepare_crops(np.zeros((3, 20, 20), np.float32), 16)
    assert g.shape == (3, 1, 16, 16)


def test_losses_behave():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    assert nt_xent_three_views(z, z, z, 0.5) < nt_xent_three_views(z, torch.randn(8, 16),
                                                                   torch.randn(8, 16), 0.5)
    w = torch.randn(3, 16)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    plain = arcface_logits(z, w, None, 30.0, 0.5)
    marg = arcface_logits(z, w, y, 30.0, 0.5)
    assert (marg.gather(1, y[:, None]) < plain.gather(1, y[:, None])).all()
    feats = torch.randn(6, 3, 4)
    tgt = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 1, 2, 2]), 3).float()
    assert supcon_label_level(feats, tgt, 0.1) > 0
    f = torch.randn(4, 5)
    same = torch.tensor([1, 1, 0, 0])
    # d = 0 everywhere: the 2 negative pairs cost m^2 each, (1/2N) * 2 = 0.25
    assert contrastive_pair_loss(f, f, same, 1.0) == pytest.approx(0.25)
    logits = torch.zeros(2, 8, 8)
    m = torch.zeros(2, 8, 8)
    m[0, :2] = 1
    assert torch.isfinite(weighted_bce_pixels(logits, m))


def test_augment_keeps_mask_aligned():
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(16, 2, 12, 12)
    x[:, :, 3, 2:9] = 1
    m = x[:, 0].clone()
    xa, ma = dihedral(x, m, gen)
    assert torch.equal(xa[:, 0], ma)
    xb, mb = augment(x, m, gen, crop=True, jitter=True)
    assert xb.shape == x.shape and mb is not None and mb.shape == m.shape


def test_batches_never_leave_a_single_sample():
    rng = np.random.default_rng(0)
    for n in (1, 2, 33, 64, 65):
        parts = list(batches(n, 32, rng))
        assert sum(len(p) for p in parts) == n and len(parts) == n_batches(n, 32)
        assert n < 2 or min(len(p) for p in parts) >= 2


def test_split_and_report():
    labels = ["a"] * 10 + ["b"] * 10
    tr, te = split_per_class(labels, 3, seed=1)
    assert len(tr) == 6 and len(te) == 14 and not set(tr) & set(te)
    tr2, _ = split_per_class(labels, 3, seed=1)
    assert np.array_equal(tr, tr2)
    rep = classification_report(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    assert rep["accuracy"] == pytest.approx(2 / 3)
    assert rep["confusion"] == [[1, 1], [0, 1]]
    assert rep["per_class"]["b"]["precision"] == pytest.approx(0.5)


def test_cli_train_and_evaluate(tmp_path, capsys):
    from PIL import Image

    from cli.classifier import register

    crops, labels, _ = synthetic(n_per_class=8)
    (tmp_path / "data" / "images").mkdir(parents=True)
    for i, (c, lab) in enumerate(zip(crops, labels, strict=True)):
        img = np.clip(c[0] * 2, 0, 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / "data" / "images" / f"{lab}_{i}.png")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "model.safetensors"
    args = parser.parse_args(["classifier", "train", "--method", "baseline", "--data",
                              str(tmp_path / "data"), "--per-class", "3", "--seed", "1",
                              "--out", str(out), "--epochs", "2", "--input-size", "16"])
    assert args.func(args) == 0
    assert out.exists()
    capsys.readouterr()
    args = parser.parse_args(["classifier", "evaluate", "--model", str(out), "--data",
                              str(tmp_path / "data"), "--json"])
    assert args.func(args) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 24 - 9 and rep["excluded_training_images"] == 9
    assert set(rep["per_class"]) == {"dust", "scratch", "stain"}
    assert 0 <= rep["accuracy"] <= 1
    args = parser.parse_args(["classifier", "evaluate", "--model", str(out), "--data",
                              str(tmp_path / "data")])
    assert args.func(args) == 0
    assert "accuracy" in capsys.readouterr().out


def test_extract_crops_from_stack():
    from inference.classifiers.crops import extract_crops

    stack = np.full((6, 200, 300), 64, np.uint16)
    stack[:, 100:104, 50:150] = 1064  # a bright horizontal line, 1000 DN above black
    crops = extract_crops(stack, [(100, 50, 104, 150), (0, 0, 10, 10)])
    assert [cr.shape for cr in crops] == [(6, 64, 64), (6, 64, 64)]
    assert crops[0].max() == pytest.approx(1000) and crops[1].max() == 0
    free = extract_crops(stack, [(100, 51, 103, 149)], window=None, margin=0.5)[0]
    assert free.shape[0] == 6 and free.shape[1] * 2 >= 3 and free.shape[2] * 2 >= 98 * 2
    raw = extract_crops(stack[0], [(101, 51, 103, 149)], window=32, bin2=False)[0]
    assert raw.shape == (1, 32, 32)
    clf = make_classifier("ce", input_size=64, epochs=1, batch_size=2)
    clf.fit(crops * 2, ["scratch", "dust"] * 2)
    assert clf.predict_proba(crops).shape == (2, 2)
