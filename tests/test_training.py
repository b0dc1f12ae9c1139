"""Training data and the training loop: the paper's sampling rules, augmentation, disjoint
seeds, resumable checkpoints (bit-identical to an uninterrupted run), config, CLI smoke.

Everything is tiny (64 px patches, width 0.0625, a few steps) so the file runs in seconds.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from inference.data import (
    PatchConfig,
    RecordingPatchSource,
    SimPatchSource,
    SimSourceConfig,
    batch_loader,
    has_content,
    make_batch,
)
from inference.train import TrainConfig, TrainError, train

TINY = dict(width=0.0625, patch_px=64, batch_size=4, scratch_per_batch=1, steps=4, lr=1e-3,
            val_every=0, val_batches=0, checkpoint_every=2, threads=1, workers=0)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _background(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    return (64 + 8 + rng.normal(0, 3, (6, size, size))).round().astype(np.uint16)


# -- the content rule --------------------------------------------------------------------------
def test_has_content_rejects_background_and_lone_hot_pixels() -> None:
    rng = np.random.default_rng(0)
    raw = _background(rng)
    assert not has_content(raw)
    raw[:, 30, 30] = 3000  # a hot pixel: one pixel in every state
    assert not has_content(raw)
    raw[:, 10:16, 10:16] = 400  # a dust blob
    assert has_content(raw)


# -- the streaming simulator -------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_source() -> SimPatchSource:
    return SimPatchSource(SimSourceConfig(series_seed=5),
                          PatchConfig(patch_px=64, batch_size=4, scratch_per_batch=1))


def test_sim_batch_has_exactly_the_configured_scratch_patches(sim_source) -> None:
    raws, masks, infos, _ = sim_source.patches(0)
    assert [bool(m.any()) for m in masks] == [True, False, False, False]
    assert infos[0]["target"] == "scratch"
    cfg = sim_source.patch
    for raw, mask in zip(raws[1:], masks[1:], strict=True):
        assert raw.shape == (6, 64, 64) and raw.dtype == np.uint16
        assert not mask.any() and has_content(raw, cfg)  # empty patches were dropped
    b = sim_source.batch(0)
    assert b.x.shape == (4, 24, 32, 32)
    assert b.max_intensity.shape == b.scratch.shape == (4, 1, 32, 32)
    assert b.is_scratch.tolist() == [True, False, False, False]
    assert float(b.scratch[0].sum()) > 0 and float(b.scratch[1:].sum()) == 0


def test_background_only_patches_are_kept_when_asked() -> None:
    """drop_empty=False: patches anywhere on the glass are used as drawn, mostly plain
    background, as most of a full-size field is."""
    anywhere = SimSourceConfig(series_seed=8, target_weights={"random": 1.0})
    keep = SimPatchSource(anywhere, PatchConfig(patch_px=64, batch_size=6, scratch_per_batch=0,
                                                drop_empty=False))
    raws, _, _, _ = keep.patches(0)
    assert keep.stats["redrawn_empty"] == 0
    assert not all(has_content(r, keep.patch) for r in raws)
    drop = SimPatchSource(anywhere, PatchConfig(patch_px=64, batch_size=6, scratch_per_batch=0))
    assert all(has_content(r, drop.patch) for r in drop.patches(0)[0])


@pytest.mark.parametrize("k", [0, 2, 3])
def test_scratch_per_batch_is_configurable(k: int) -> None:
    src = SimPatchSource(SimSourceConfig(series_seed=6),
                         PatchConfig(patch_px=64, batch_size=3, scratch_per_batch=k))
    assert src.batch(1).is_scratch.tolist() == [True] * k + [False] * (3 - k)


def test_patch_config_checks_its_values() -> None:
    with pytest.raises(ValueError):
        PatchConfig(patch_px=100)
    with pytest.raises(ValueError):
        PatchConfig(batch_size=4, scratch_per_batch=5)


def test_batches_are_deterministic_and_independent_of_workers(sim_source) -> None:
    a, b = sim_source.batch(3), sim_source.batch(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(sim_source.batch(4).x, a.x)
    inproc = list(batch_loader(sim_source, 2, 4, workers=0))
    assert all(torch.equal(x, y) for x, y in zip(inproc[1], a, strict=True))


def test_training_seeds_never_hit_the_held_out_series() -> None:
    from world.simulate import sample_seed

    # exclude the training series itself: every seed must be replaced by one outside it
    src = SimPatchSource(SimSourceConfig(series_seed=9, exclude_series=((9, 8), (1000, 50))),
                         PatchConfig(patch_px=64, batch_size=2, scratch_per_batch=1))
    held = {sample_seed(9, i) for i in range(8)} | {sample_seed(1000, i) for i in range(50)}
    seeds = [src.seed_for(i) for i in range(16)]
    assert not set(seeds) & held
    assert seeds[8:] == [sample_seed(9, i) for i in range(8, 16)]  # untouched outside
    assert src.stats["seeds_skipped"] == 8


def test_noise_leaves_the_autoencoder_target_clean() -> None:
    rng = np.random.default_rng(1)
    raw = _background(rng)
    raw[:, 20:24, 20:24] = 900
    mask = np.zeros((64, 64), np.uint8)
    quiet = PatchConfig(patch_px=64, batch_size=1, gaussian_sigma=0.0, salt_pepper_fraction=0.0,
                        augment=False)
    noisy = replace(quiet, gaussian_sigma=0.05, salt_pepper_fraction=0.01)
    a = make_batch([raw], [mask], np.random.default_rng(2), quiet)
    b = make_batch([raw], [mask], np.random.default_rng(2), noisy)
    assert torch.equal(a.max_intensity, b.max_intensity)
    assert not torch.equal(a.x, b.x)


def test_augmentation_keeps_mask_registered_with_raw() -> None:
    rng = np.random.default_rng(3)
    raw = _background(rng)
    mask = np.zeros((64, 64), np.uint8)
    raw[:, 10, 5:50] = 2000
    mask[10, 5:50] = 1
    for seed in range(6):
        b = make_batch([raw], [mask], np.random.default_rng(seed),
                       PatchConfig(patch_px=64, batch_size=1, gaussian_sigma=0.0,
                                   salt_pepper_fraction=0.0))
        bright = b.max_intensity[0, 0] > 0.3
        assert torch.equal(bright, b.scratch[0, 0] > 0.5)


# -- recordings with truth ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_recordings(tmp_path_factory) -> list[Path]:
    from world.sample import DefectMix
    from world.simulate import simulate_recordings

    out = tmp_path_factory.mktemp("recs")
    return simulate_recordings(out, 2, seed=77, sensor=(256, 256),
                               mix=DefectMix(scratch_fraction=1.0), progress=False)


def test_recording_source_follows_the_sampling_rules(sim_recordings) -> None:
    src = RecordingPatchSource(sim_recordings, PatchConfig(patch_px=64, batch_size=4,
                                                           scratch_per_batch=2), seed=1)
    b = src.batch(0)
    assert b.is_scratch.tolist() == [True, True, False, False]
    assert float(b.scratch[2:].sum()) == 0
    again = RecordingPatchSource(sim_recordings, src.patch, seed=1).batch(0)
    assert torch.equal(again.x, b.x)
    assert src.describe()["rois_with_scratch"] >= 1
    src.close()


# -- the training loop -------------------------------------------------------------------------
def _cfg(tmp: Path, **kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "run_dir": str(tmp), "sim": {"series_seed": 11}, **kw})


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    whole = train(_cfg(tmp_path / "a", lr_schedule="cosine", warmup_steps=1), progress=False)
    assert whole.finished and whole.model_path is not None
    part = train(_cfg(tmp_path / "b", lr_schedule="cosine", warmup_steps=1), progress=False,
                 stop_after=2)
    assert not part.finished and part.step == 2 and part.model_path is None
    rest = train(_cfg(tmp_path / "b", lr_schedule="cosine", warmup_steps=1), progress=False)
    assert rest.finished and rest.step == 4
    assert whole.history["loss"] == rest.history["loss"]
    sa, sb = whole.model.state_dict(), rest.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    train(_cfg(tmp_path), progress=False, stop_after=2)
    with pytest.raises(TrainError, match="different settings"):
        train(_cfg(tmp_path, lr=5e-4), progress=False)
    # settings that do not change the result may change
    res = train(_cfg(tmp_path, log_every=1, out=str(tmp_path / "m.safetensors")), progress=False)
    assert res.finished and (tmp_path / "m.safetensors").exists()


def test_checkpoint_is_safetensors_and_json(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    train(_cfg(tmp_path), progress=False, stop_after=2)
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    assert meta["step"] == 2 and meta["config"]["lr"] == 1e-3
    tensors = load_file(str(tmp_path / "checkpoint.safetensors"))
    assert any(k.startswith("opt.") and k.endswith("exp_avg") for k in tensors)


def test_bce_variant_trains_and_exports_a_loadable_card(tmp_path: Path) -> None:
    from inference.detector import Detector

    res = train(_cfg(tmp_path, loss="bce", nested=False, val_every=2, val_batches=1,
                     val_scratch_per_batch=1), progress=False)
    assert res.history["val"] and "val_loss" in res.history["val"][-1]
    det = Detector.from_file(res.model_path)
    assert det.model.config.output_activation == "sigmoid"
    card = json.loads(res.model_path.with_suffix(".json").read_text())
    assert card["training_data"]["config"]["loss"] == "bce"
    assert card["training_data"]["series_seed"] == 11
    assert card["metrics"]["training"]["final_loss"] is not None


def test_config_from_toml_and_unknown_keys(tmp_path: Path) -> None:
    p = tmp_path / "t.toml"
    p.write_text('width = 0.25\nloss = "bce"\n[sim]\nseries_seed = 4\n')
    cfg = TrainConfig.from_toml(p, steps=7)
    assert (cfg.width, cfg.loss, cfg.steps, cfg.sim["series_seed"]) == (0.25, "bce", 7, 4)
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.eps) == (1e-4, 0.5, 0.9, 1e-8)  # the paper's
    p.write_text("widht = 0.25\n")
    with pytest.raises(TrainError, match="unknown training settings"):
        TrainConfig.from_toml(p)
    with pytest.raises(TrainError):
        TrainConfig(loss="l1")


def test_cosine_schedule_and_warmup() -> None:
    cfg = TrainConfig(lr=1e-3, steps=100, lr_schedule="cosine", lr_final_fraction=0.1,
                      warmup_steps=10)
    assert cfg.lr_at(0) == pytest.approx(1e-4)
    assert cfg.lr_at(10) == pytest.approx(1e-3)
    assert cfg.lr_at(99) == pytest.approx(1e-4, rel=0.05)
    assert TrainConfig(lr=1e-4).lr_at(50) == 1e-4


def test_train_cli_smoke(tmp_path: Path, capsys) -> None:
    from inference.detector import load_model
    from main import main

    out = tmp_path / "cli.safetensors"
    rc = main(["--log-dir", str(tmp_path / "logs"), "train", "--run-dir", str(tmp_path / "run"),
               "--out", str(out), "--width",
               "0.0625", "--patch", "64", "--batch", "2", "--scratch-per-batch", "1",
               "--steps", "2", "--val-every", "0", "--sim-seed", "3", "--no-progress",
               "--exclude-series", "1000:5"])
    assert rc == 0
    assert "trained 2 steps" in capsys.readouterr().out
    model, card = load_model(out)
    assert card.training_data["exclude_series"] == [[1000, 5]]
    assert card.training_data["config"]["steps"] == 2


def test_init_from_starts_a_second_stage_and_records_provenance(tmp_path: Path) -> None:
    first = train(_cfg(tmp_path / "a", steps=2), progress=False)
    card1 = json.loads(first.model_path.with_suffix(".json").read_text())
    second = train(_cfg(tmp_path / "b", steps=1, lr=1e-12, init_from=str(first.model_path),
                        sim={"series_seed": 12}), progress=False)
    sa, sb = first.model.state_dict(), second.model.state_dict()
    assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa)  # lr ~0: unchanged
    card2 = json.loads(second.model_path.with_suffix(".json").read_text())
    init = card2["training_data"]["init_from"]
    assert init["weights_sha256"] == card1["weights_sha256"]
    assert init["training_data"]["series_seed"] == 11
    with pytest.raises(TrainError, match="architecture"):
        train(_cfg(tmp_path / "c", nested=False, init_from=str(first.model_path)),
              progress=False)
