"""DART with the slice groups over two gloo ranks equals the one-process DART, MRI and 4D-STEM."""
from __future__ import annotations

import csv

import pytest
import torch

from paperlib.config import load_profile
from paperlib.diffusion import distributed as dd
from paperlib.experiments import ranks
from paperlib.experiments.priors import run_dart
from paperlib.experiments.runner import MODALITIES


def _case(modality: str):
    profile = load_profile("ci")
    return profile, MODALITIES[modality].cases(profile, "test", 1)[0]


def _worker(rank: int, world: int, modality: str) -> dict:
    profile, case = _case(modality)
    out = ranks.dart_ranks(profile, modality, case, seed=3)
    return {"volume": out.volume, "groups": out.groups, "threads": torch.get_num_threads(),
            "stats": out.stats}


def _main_worker(rank: int, world: int, out_dir: str) -> None:
    ranks.main(["--profile", "ci", "--modality", "mri", "--cases", "0", "--seeds", "1", "--out", out_dir])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("modality", ["mri", "stem"])
def test_two_ranks_equal_one_process(modality):
    r0, r1 = dd.spawn(_worker, 2, modality)
    assert (r0["groups"], r1["groups"]) == ([0], [1])
    assert r1["volume"] is None and [s.rank for s in r0["stats"]] == [0, 1]
    profile, case = _case(modality)
    setup = ranks._setup(modality)
    threads = torch.get_num_threads()
    torch.set_num_threads(r0["threads"])  # the ranks' thread count: bitwise-comparable kernels
    try:
        want = run_dart(setup, case.operator, case.measurement, profile, torch.Generator().manual_seed(3))
    finally:
        torch.set_num_threads(threads)
    assert r0["volume"].shape == want.shape
    assert torch.equal(r0["volume"], want), (r0["volume"] - want).abs().max()


@pytest.mark.timeout(300)
def test_main_writes_the_cases_and_volumes(tmp_path):
    dd.spawn(_main_worker, 2, str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "dart_ranks_cases.csv")))
    assert len(rows) == 1 and rows[0]["world_size"] == "2" and rows[0]["seed"] == "1"
    assert 0 < float(rows[0]["ssim_whole"]) <= 1 and len(rows[0]["per_rank_peak_rss_bytes"].split(";")) == 2
    assert (tmp_path / f"{rows[0]['case']}_seed1.npy").stat().st_size > 0


def test_samples_above_one_and_a_case_outside_the_split_are_refused():
    profile, case = _case("mri")
    many = profile.model_copy(update={"mri_diffusion": profile.mri_diffusion.model_copy(update={
        "dart": profile.mri_diffusion.dart.model_copy(update={"samples": 2})})})
    with pytest.raises(ValueError, match="samples = 2"):
        ranks.dart_ranks(many, "mri", case)
    pnp = profile.with_overrides("mri", "dart", {"sigma_max": 0.03, "sigma_min": 0.005, "start": 1.0, "samples": 1})
    with pytest.raises(ValueError, match="paper's chain only"):
        ranks.dart_ranks(pnp, "mri", case)
    with pytest.raises(ValueError, match="--cases"):
        ranks._cases(profile, "mri", "test", [99])
