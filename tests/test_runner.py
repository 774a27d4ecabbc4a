"""The experiment runner: jobs per seed, the columns of each modality, and its errors."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from paperlib.config import load_profile
from paperlib.experiments import mri as mri_exp
from paperlib.experiments.registry import Registry
from paperlib.experiments.runner import COST_COLUMNS, ID_COLUMNS, MODALITIES, Modality, modality_of, run_cases
from paperlib.metrics.image import volume_scores


@dataclass(frozen=True)
class ToyCase:
    case_id: str
    truth: torch.Tensor
    measurement: torch.Tensor
    operator: object = None


def _toy_modality(calls: list) -> Modality:
    reg = Registry("toy")

    @reg.register("copy")
    def _copy(op, y, profile, generator):
        calls.append(("copy", generator.initial_seed()))
        return y.clone()

    @reg.register("noisy", stochastic=True)
    def _noisy(op, y, profile, generator):
        calls.append(("noisy", generator.initial_seed()))
        return y + torch.randn(y.shape, generator=generator)

    def score(recon, case):
        return {"max_error": float((recon - case.truth).abs().max()), "label": case.case_id.upper()}

    return Modality("toy", "Toy", reg, lambda profile, split, n=None, progress=False: [], score,
                    ("max_error",), descriptors=("label",), dataset="toys")


def test_jobs_per_seed_rows_and_columns():
    calls: list = []
    toy = _toy_modality(calls)
    cases = [ToyCase(f"c{i}", torch.full((2, 3, 3), float(i)), torch.full((2, 3, 3), float(i))) for i in range(2)]
    rows, recons = run_cases(None, toy, cases, ["noisy", "copy"], seeds=(5, 7), keep=True, progress=False)
    # stochastic methods once per seed, deterministic ones once per case with the first seed
    assert [(r["case"], r["method"], r["seed"]) for r in rows] == [
        ("c0", "noisy", 5), ("c0", "noisy", 7), ("c0", "copy", 5),
        ("c1", "noisy", 5), ("c1", "noisy", 7), ("c1", "copy", 5)]
    assert calls == [("noisy", 5), ("noisy", 7), ("copy", 5)] * 2  # each job its own seeded generator
    for r in rows:
        assert tuple(r) == ID_COLUMNS + ("max_error",) + COST_COLUMNS + ("label",)
        assert r["modality"] == "toy" and r["dataset"] == "toys" and r["label"] == r["case"].upper()
        assert r["wall_time_s"] >= 0 and r["peak_rss_bytes"] > 0
        recon = recons[(r["case"], r["method"], r["seed"])]
        assert recon.dtype == torch.float32 and recon.shape == (2, 3, 3)
    assert [r["max_error"] for r in rows if r["method"] == "copy"] == [0.0, 0.0]
    assert all(r["max_error"] > 0.5 for r in rows if r["method"] == "noisy")
    # the same seed gives the same reconstruction; another seed another one
    assert not torch.equal(recons[("c0", "noisy", 5)], recons[("c0", "noisy", 7)])
    again, _ = run_cases(None, toy, cases[:1], ["noisy"], seeds=(5,), dataset="other", progress=False)
    assert again[0]["max_error"] == rows[0]["max_error"] and again[0]["dataset"] == "other"
    assert run_cases(None, toy, cases, ["copy"], progress=False)[1] == {}  # keep=False keeps nothing


def test_errors_name_the_argument():
    toy = _toy_modality([])
    case = ToyCase("c", torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"methods: unknown toy methods \['nope'\]; registered: \['copy', 'noisy'\]"):
        run_cases(None, toy, [case], ["copy", "nope"], progress=False)
    with pytest.raises(ValueError, match="seeds: expected at least one seed"):
        run_cases(None, toy, [case], ["copy"], seeds=(), progress=False)
    with pytest.raises(ValueError, match=r"modality: expected one of \['mri', 'stem'\], got 'ct'"):
        run_cases(None, "ct", [case], ["copy"], progress=False)
    assert modality_of("stem") is MODALITIES["stem"] and modality_of(toy) is toy


def test_columns_of_each_modality():
    assert MODALITIES["mri"].row_columns() == ID_COLUMNS + ("ssim_whole", "ssim_head", "psnr_volume") + COST_COLUMNS
    assert MODALITIES["stem"].row_columns() == ID_COLUMNS + (
        "ssim_slice_mean", "psnr_slice_mean", "ssim_projected", "psnr_projected", "ssim_depth_blind",
        "ssim_slices") + COST_COLUMNS + ("material", "zone_axis")
    assert {m.name for m in MODALITIES.values()} == set(MODALITIES)
    # DART and DRIFT are registered for both modalities from the same wrappers
    for spec in MODALITIES.values():
        assert spec.methods["dart"].stochastic and spec.methods["drift"].stochastic


def test_mri_rows_score_what_their_names_say(one_thread):
    cfg = load_profile("ci")
    case = MODALITIES["mri"].cases(cfg, "test", n=1)[0]
    assert isinstance(case, mri_exp.MRICase) and case.truth is case.image and case.measurement is case.kspace
    rows, recons = run_cases(cfg, "mri", [case], ["zero_filled"], keep=True, progress=False)
    (row,) = rows
    recon = recons[(case.case_id, "zero_filled", 0)]
    assert torch.equal(recon, case.operator.zero_filled(case.kspace).abs().float())
    whole = volume_scores(recon, case.image)
    inside = volume_scores(recon, case.image, head_mask=case.head_mask)
    assert row["ssim_whole"] == whole["ssim"] and row["psnr_volume"] == whole["psnr"]
    assert row["ssim_head"] == inside["ssim_head"] and math.isfinite(row["ssim_head"])
    assert row["ssim_whole"] != row["ssim_head"] and row["dataset"] == "brain"
