"""The real-scan diagnostics in benchmarks/: field-of-view crops (real_mri_fov.py), the noisy
training-source template (real_mri_source_noise.py), the held-out scans' background
(real_mri_background.py), the choice of the real-scan prior (real_mri_prior_choice.py) and the
variants of DART's loop (real_mri_dart_variants.py). Their case builders and reports, not their
(slow) runs (DART's loop once on one ci-sized case)."""
from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import pytest
from _bench import load_benchmark  # tests/
import torch

from paperlib.config import load_profile
from paperlib.data.intensity import intensity_scale
from paperlib.data.real_mri import load_real_scan

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fov():
    yield load_benchmark("real_mri_fov")
    sys.modules.pop("bench_real_mri_fov", None)


@pytest.fixture(scope="module")
def source_noise():
    yield load_benchmark("real_mri_source_noise")
    sys.modules.pop("bench_real_mri_source_noise", None)


def test_crop_boxes_are_the_head_box_and_its_central_half(fov):
    mask = torch.zeros(3, 40, 30, dtype=torch.bool)
    mask[1, 5:25, 10:26] = True  # rows 5..24, columns 10..25
    assert fov.crop_box(mask, "full") == (slice(None), slice(None))
    assert fov.crop_box(mask, "head box") == (slice(5, 25), slice(10, 26))
    assert fov.crop_box(mask, "inside") == (slice(10, 20), slice(14, 22))
    with pytest.raises(ValueError, match="fov"):
        fov.crop_box(mask, "centre")


def test_fov_cases_crop_the_tuning_scans_only(fov):
    cases = fov.cases(load_profile("ci"))
    assert {c.role for c in cases} == {"tuning"}
    assert len(cases) == 2 * len(fov.FOVS) * len(load_profile("ci").real_mri.accelerations)
    full = next(c for c in cases if c.scan == "dipy_aniso|full")
    inside = next(c for c in cases if c.scan == "dipy_aniso|inside")
    assert tuple(full.image.shape) == (24, 58, 58) and inside.image.shape[1:] < full.image.shape[1:]
    assert inside.head_mask.float().mean() > full.head_mask.float().mean()


def test_noisy_template_has_the_stated_rician_floor(source_noise):
    cases, fractions = source_noise.cases(load_profile("ci"), seed=0)
    assert len(cases) == len(source_noise.SIGMAS) * len(load_profile("ci").real_mri.accelerations)
    scan = load_real_scan(source_noise.SOURCE)
    scale = intensity_scale(scan.image, name="template")
    for sigma in source_noise.SIGMAS:
        case = next(c for c in cases if c.case_id.startswith(f"sigma={sigma:g}@"))
        assert case.role == "training_source" and f"{sigma:g}" in fractions
        if sigma == 0:
            assert torch.equal(case.image, scan.image)
            continue
        air = scan.image == 0  # the template's background is exactly 0: pure Rayleigh noise there
        expected = sigma * scale * math.sqrt(math.pi / 2)  # mean of a Rayleigh variable of parameter sigma
        assert float(case.image[air].mean()) == pytest.approx(expected, rel=0.02)
    # the noise is drawn from the seed: the same cases again
    again, _ = source_noise.cases(load_profile("ci"), seed=0)
    assert all(torch.equal(a.image, b.image) for a, b in zip(cases, again))


def test_reports_render_the_committed_results(fov, source_noise):
    """Both reports, re-rendered from their committed CSVs, give the committed tables (commit line aside)."""
    from paperlib import tables

    profile = load_profile("default")
    results = REPO / "benchmarks" / "results"
    todo = fov.cases(profile)
    shapes = {c.scan: (tuple(c.image.shape), float(c.head_mask.float().mean())) for c in todo}
    text = fov.report(tables.read_csv_rows(results / "real_mri_fov.csv"), "default", shapes)
    assert _body(text) == _body((results / "real_mri_fov.md").read_text())
    noisy, fractions = source_noise.cases(profile, seed=0)
    noise = {name: source_noise.background_noise(name) for name in ("dipy_aniso", "dipy_s0")}
    text = source_noise.report(tables.read_csv_rows(results / "real_mri_source_noise.csv"), "default", fractions, noise)
    assert _body(text) == _body((results / "real_mri_source_noise.md").read_text())


def _body(markdown: str) -> list[str]:
    return [line.split("; ", 1)[-1] if line.startswith("Commit ") else line for line in markdown.splitlines()]


def test_background_noise_of_a_tuning_scan(source_noise):
    # the value benchmarks/results/real_mri_source_noise.md (and the README) quote
    assert source_noise.background_noise("dipy_aniso") == pytest.approx(0.0184, abs=5e-5)
    assert source_noise.background_noise("dipy_s0") == pytest.approx(0.0075, abs=5e-5)


#: The comparisons of real-scan priors on the tuning scans, oldest first; the newest chose the prior
#: the profile ships, each earlier one's choice is a candidate of a later one.
PRIOR_COMPARISONS = ["real_mri_prior_choice", "real_mri_prior_anatomy", "real_mri_prior_depth", "real_mri_prior_gpu"]


@pytest.mark.parametrize("name", PRIOR_COMPARISONS)
def test_the_profile_samples_the_prior_the_tuning_scans_chose(name, tmp_path):
    """benchmarks/results/{name}.csv (tuning scans only): the prior its rule chooses
    (real_mri_prior_choice.chosen) is the default profile's real_mri.checkpoint, by its weights'
    sha256, for the newest comparison, and for an earlier one a shipped prior that a later
    comparison ran again and superseded; every candidate not shipped (no folder under checkpoints/)
    has its note; the report and the summary CSV re-render from the CSV."""
    from paperlib import tables
    from paperlib.validation import prior_sha256

    choice = load_benchmark("real_mri_prior_choice")
    results = REPO / "benchmarks" / "results"
    rows = tables.read_csv_rows(results / f"{name}.csv")
    assert {r["role"] for r in rows} == {"tuning"}
    summary = choice.summary(rows)
    pick = choice.chosen(summary)
    later = [r["prior_sha256"] for n in PRIOR_COMPARISONS[PRIOR_COMPARISONS.index(name) + 1:]
             for r in tables.read_csv_rows(results / f"{n}.csv") if r["method"] == "dart"]
    if later:
        assert (REPO / pick["prior_checkpoint"]).is_dir()
        assert prior_sha256(pick["prior_checkpoint"]) == pick["prior_sha256"] and pick["prior_sha256"] in later
    else:
        assert pick["prior_sha256"] == prior_sha256(load_profile("default").real_mri.checkpoint)
    folders = {r["prior_checkpoint"] for r in rows if r["method"] == "dart"}
    shipped = {c for c in folders if c.startswith("checkpoints/") and (REPO / c).is_dir()}
    assert folders - shipped <= set(choice.NOTES)
    committed = (results / f"{name}.md").read_text()
    threads = int(re.search(r"; (\d+) thread\(s\)", committed).group(1))  # as the run was made
    assert _body(choice.report(rows, "default", threads)) == _body(committed)
    assert tables.read_csv_rows(results / f"{name}_summary.csv") == tables.read_csv_rows(
        tables.write_csv_rows(summary, tmp_path / f"{name}_summary.csv"))
    sys.modules.pop("bench_real_mri_prior_choice", None)


def test_the_prior_choice_rule_prefers_the_smaller_of_level_priors():
    """chosen(): the best criterion wins unless a smaller network is within LEVEL of it; rows
    without prior_parameters (CSVs from before the column) count as one size."""
    choice = load_benchmark("real_mri_prior_choice")
    tv = {"method": "tv", "criterion": 0.7}
    big = {"method": "dart", "criterion": 0.8506, "prior_parameters": 4_000_000, "prior_checkpoint": "big"}
    small = {"method": "dart", "criterion": 0.8500, "prior_parameters": 2_000_000, "prior_checkpoint": "small"}
    assert choice.chosen([tv, big, small])["prior_checkpoint"] == "small"
    worse = {**small, "criterion": 0.8490}  # 0.0016 below: not level
    assert choice.chosen([tv, big, worse])["prior_checkpoint"] == "big"
    a = {"method": "dart", "criterion": 0.8310, "prior_parameters": None, "prior_checkpoint": "a"}
    b = {"method": "dart", "criterion": 0.8311, "prior_parameters": None, "prior_checkpoint": "b"}
    assert choice.chosen([tv, a, b])["prior_checkpoint"] == "b"
    sys.modules.pop("bench_real_mri_prior_choice", None)


def test_background_cases_score_outside_the_head_of_the_tables_cases():
    """real_mri_background.py: the held-out scans with a background, the table's own cases (image,
    k-space) with the complement of the head mask as the scored mask; its committed report
    re-renders from its CSV, whose whole-image SSIMs are the table's."""
    from paperlib import tables
    from paperlib.experiments.real_mri import real_cases

    background = load_benchmark("real_mri_background")
    profile = load_profile("ci")
    todo, fractions = background.cases(profile)
    table = {c.case_id: c for c in real_cases(profile, role="held_out")}
    assert {c.role for c in todo} == {"held_out"} and "nib_anatomical" not in fractions  # no background
    for case in todo:
        same = table[case.case_id]
        assert torch.equal(case.kspace, same.kspace) and torch.equal(case.head_mask, ~same.head_mask)
        assert 0 < fractions[case.scan] < 1
    results = REPO / "benchmarks" / "results"
    rows = tables.read_csv_rows(results / "real_mri_background.csv")
    committed = load_profile("default")
    text = background.report(rows, "default", background.cases(committed)[1])
    assert _body(text) == _body((results / "real_mri_background.md").read_text())
    cli = load_benchmark("_cli")  # the table made with the rows' prior (frozen when the prior changed)
    table_rows = {(r["case"], r["method"]): r for r in tables.read_csv_rows(cli.table_file(cli.rows_prior(rows)))}
    assert len(rows) == 2 * len(background.cases(committed)[0])  # DART and TV per case
    for r in rows:  # the same reconstructions as the table's (deterministic DART; TV)
        assert float(r["ssim_whole"]) == pytest.approx(float(table_rows[r["case"], r["method"]]["ssim_whole"]), abs=2e-4)
    sys.modules.pop("bench_real_mri_background", None)


def test_mask_draws_redraw_only_the_masks_and_draw_0_is_the_tables():
    """real_mri_mask_draws.py: draw 0 is the table's case (same k-space), other draws other masks of the
    same kind and sampling rate on the same image; its committed report re-renders from its CSV, draw 0's
    rows are the table's and its draw-0 summary is the table's held-out margin row."""
    from paperlib import tables
    from paperlib.experiments.real_mri import real_cases, scan_mask_seed

    draws = load_benchmark("real_mri_mask_draws")
    profile = load_profile("ci")
    todo = draws.cases(profile, 2)
    table = {c.case_id: c for c in real_cases(profile, role="held_out")}
    assert len(todo) == 2 * len(table)
    for case in todo:
        base = table[case.case_id.rsplit("#", 1)[0]]
        same = torch.equal(case.kspace, base.kspace)
        assert same == case.case_id.endswith("#0")
        assert torch.equal(case.image, base.image) and torch.equal(case.head_mask, base.head_mask)
        masks, base_masks = case.operator.mask, base.operator.mask
        assert masks.shape == base_masks.shape
        assert abs(float(masks.float().mean()) - float(base_masks.float().mean())) < 0.02  # same sampling rate
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="draw"):
            scan_mask_seed(profile, "nib_anatomical", bad)
    with pytest.raises(ValueError, match="draws"):
        draws.cases(profile, 0)

    results = REPO / "benchmarks" / "results"
    rows = tables.read_csv_rows(results / "real_mri_mask_draws.csv")
    text = draws.report(rows, "default")
    assert _body(text) == _body((results / "real_mri_mask_draws.md").read_text())
    cli = load_benchmark("_cli")  # the table made with the rows' prior (frozen when the prior changed)
    table_rows = {(r["case"], r["method"]): r for r in tables.read_csv_rows(cli.table_file(cli.rows_prior(rows)))}
    zero = [r for r in rows if r["case"].endswith("#0")]
    assert zero and len(rows) % len(zero) == 0
    for r in zero:
        want = table_rows[r["case"].rsplit("#", 1)[0], r["method"]]
        for column in ("ssim_whole", "ssim_head"):
            assert float(r[column]) == pytest.approx(float(want[column]), abs=2e-4)
    margin = {(r["Role"], r["Acceleration"]): r
              for r in tables.read_csv_rows(cli.table_file(cli.rows_prior(rows), "tab_real_mri_margin.csv"))}
    for line in text.splitlines():
        if "| 0 (the table's) |" in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            want = margin["held_out", cells[0]]
            assert int(cells[2]) == int(float(want["n scans"]))
            assert cells[3:7] == [want["DART - TV, whole image"], want["whole >= +0.02"], want["DART - TV, head"],
                                  want["head >= +0.02"]]
    sys.modules.pop("bench_real_mri_mask_draws", None)


def test_mask_draws_growth_rows_are_the_means_of_their_scans():
    """The 'as the held-out set grew' rows: cumulative means over the scans of searches 1..k, the last
    equal to the over-scans mean; the per-subject row averages the two scans of pycortex's S1 first."""
    from paperlib.data.real_mri import REAL_SCANS

    draws = load_benchmark("real_mri_mask_draws")
    diffs = [{"scan": s, "acceleration": 4.0, "draw": k, "ssim_whole": v, "ssim_head": v / 2, "case": s}
             for s, v in (("nib_example4d", 0.1), ("nib_afni_epi", 0.2), ("pycortex_s1_t1", 0.3),
                          ("pycortex_s1_epi", 0.5)) for k in (0, 1)]
    diffs[1]["ssim_whole"] = 0.3  # nib_example4d, draw 1: the draws differ
    lines = draws.growth_lines(diffs, [0, 1])
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:3]): line.strip("|").split("|")[3:]
            for line in lines if line.startswith("| search")}
    assert REAL_SCANS["nib_afni_epi"].batch == 2 and REAL_SCANS["pycortex_s1_t1"].batch == 4
    assert rows["search 1", "1 scans", "4x"] == [" +0.1000 / +0.0500 ", " +0.2000 / +0.0500 "]
    assert rows["searches 1-2", "2 scans", "4x"][0].strip() == "+0.1500 / +0.0750"
    assert rows["searches 1-4", "4 scans", "4x"][0].strip() == "+0.2750 / +0.1375"
    (subject,) = [line for line in lines if line.startswith("| per subject")]
    # (0.1 + 0.2 + (0.3 + 0.5) / 2) / 3 for draw 0
    assert "| 3 subjects | 4x | +0.2333 / +0.1167 |" in subject
    sys.modules.pop("bench_real_mri_mask_draws", None)


def test_tv_oracle_picks_the_best_weight_per_case_and_renders_the_committed_report():
    """real_mri_tv_oracle.py: per case the oracle weight is the one with the best mean of whole and head
    SSIM; the committed report re-renders from its CSV, and TV at the table's weight is the table's TV."""
    from paperlib import tables

    oracle = load_benchmark("real_mri_tv_oracle")
    results = REPO / "benchmarks" / "results"
    rows = tables.read_csv_rows(results / "real_mri_tv_oracle.csv")
    text = oracle.report(rows, "default")
    assert _body(text) == _body((results / "real_mri_tv_oracle.md").read_text())
    weight = load_profile("default").real_mri.baselines.tv_weight
    table_tv = oracle.table_rows("tv")
    scans = {(r["scan"], float(r["acceleration"])) for r in rows}
    assert scans == {k for k in table_tv if k[0] in {r["scan"] for r in rows}} and len(scans) == 16
    for key in scans:
        mine = [r for r in rows if (r["scan"], float(r["acceleration"])) == key]
        assert len(mine) == len(oracle.WEIGHTS)
        at_table = next(r for r in mine if float(r["tv_weight"]) == weight)
        assert float(at_table["ssim_whole"]) == pytest.approx(float(table_tv[key]["ssim_whole"]), abs=2e-4)
        best = max(mine, key=oracle._criterion)
        assert f"| {key[0]} | {key[1]:g}x |" in text and f"| {float(best['tv_weight']):g} |" in text
    # a made-up pair of weights: the oracle takes the better criterion, not the better whole-image SSIM
    fake = [{"scan": "nib_example4d", "acceleration": "4", "tv_weight": w, "ssim_whole": a, "ssim_head": b,
             "case": "nib_example4d@4x"} for w, a, b in ((weight, 0.9, 0.5), (0.01, 0.8, 0.7))]
    line = next(l for l in oracle.report(fake, "default").splitlines() if l.startswith("| nib_example4d | 4x"))
    assert "| 0.01 | 0.8000 / 0.7000 |" in line
    sys.modules.pop("bench_real_mri_tv_oracle", None)


@pytest.fixture(scope="module")
def variants():
    yield load_benchmark("real_mri_dart_variants")
    sys.modules.pop("bench_real_mri_dart_variants", None)


def test_dart_variants_profile_run_is_the_tables_dart(variants):
    """real_mri_dart_variants.py: its "profile" run is the table's DART bit for bit (the wrappers only
    observe), the observed variants are the last denoised estimate and the mean of the last corrected
    ones, and the wrapped runs differ from it."""
    from paperlib.experiments import real_mri

    profile = load_profile("ci")
    case = real_mri.real_cases(profile, role="tuning")[0]
    table = real_mri.REAL_MRI_METHODS["dart"].fn(case.operator, case.kspace, profile, torch.Generator().manual_seed(0))
    out, seconds = variants.run_case(profile, case, *variants.RUNS[variants.PROFILE])
    assert torch.equal(out["x"], table) and seconds > 0
    assert set(out) == {"x", *variants.OBSERVED}
    assert not torch.equal(out[variants.OBSERVED[0]], table) and not torch.equal(out[variants.OBSERVED[1]], table)
    soft, _ = variants.run_case(profile, case, 0.6, False, False)
    assert set(soft) == {"x"} and not torch.equal(soft["x"], table)
    assert float((soft["x"] - table).abs().max()) < float(table.max())  # the same scan, not another


def test_dart_variants_recorder_and_depth_flip_on_fakes(variants):
    class Op:
        slice_local = True

        def bind_physics_step(self, y, step_size=1.0):
            return lambda x: x - step_size

    rec = variants.Recorder(Op(), keep=2, nonnegative=True)
    step = rec.bind_physics_step(None, step_size=1.0)
    outs = [step(torch.full((2,), float(v))) for v in (0.5, 3.0, 4.0)]
    assert rec.slice_local is True  # delegated
    assert torch.equal(outs[0], torch.zeros(2))  # -0.5 projected onto x >= 0
    assert [float(x[0]) for x in rec.inputs] == [3.0, 4.0] and [float(x[0]) for x in rec.outputs] == [2.0, 3.0]

    class Prior:
        def denoise(self, x_t, t):
            return x_t * torch.arange(1.0, x_t.shape[-3] + 1)[:, None, None]  # depends on the depth order

    prior = variants.depth_flipping(Prior())
    x = torch.rand(3, 2, 2)
    plain = Prior().denoise(x, 0)
    calls = [prior.denoise(x, 0) for _ in range(2 * variants.ORIENTATIONS + 1)]
    for k, got in enumerate(calls):
        flipped = (k // variants.ORIENTATIONS) % 2 == 1
        assert torch.equal(got, Prior().denoise(x.flip(-3), 0).flip(-3) if flipped else plain)
    assert not torch.equal(calls[variants.ORIENTATIONS], plain)


def test_dart_variants_committed_report_and_its_profile_rows_are_the_tables(variants):
    """The committed report re-renders from its CSV; its "profile" rows are the table's tuning DART rows
    (to the float rounding of the two machines' precisions, benchmarks/results/figures_diff.md)."""
    from paperlib import tables

    results = REPO / "benchmarks" / "results"
    rows = tables.read_csv_rows(results / "real_mri_dart_variants.csv")
    assert _body(variants.report(rows, "default", 2)) == _body((results / "real_mri_dart_variants.md").read_text())
    cli = load_benchmark("_cli")  # the table made with the rows' prior (frozen when the prior changed)
    table = {r["case"]: r for r in tables.read_csv_rows(cli.table_file(rows[0]["checkpoint"]))
             if r["method"] == "dart" and r["role"] == "tuning"}
    mine = {r["case"]: r for r in rows if r["variant"] == variants.PROFILE}
    assert set(mine) == set(table) and len(mine) == 4
    for case, r in mine.items():
        for column in ("ssim_whole", "ssim_head"):
            assert float(r[column]) == pytest.approx(float(table[case][column]), abs=2e-4)  # README: "within 0.0002"
    assert {r["variant"] for r in rows} == {*variants.RUNS, *variants.OBSERVED}


def test_prior_fit_sets_and_committed_report():
    """real_mri_prior_fit.py: training slabs are the first of the prior's own (seeds from slab_seed),
    unseen ones never trained on, real volumes the tuning scans only; more training slabs than the
    profile's are refused; the committed report re-renders from its CSV, and what the README
    concludes from it (no memorising, a larger lead on the tuning scans) is what the CSV holds."""
    import re

    from paperlib import tables
    from paperlib.data.randomized import randomized_slab
    from paperlib.data.real_mri import REAL_SCANS

    fit = load_benchmark("real_mri_prior_fit")
    profile = load_profile("ci")
    sets = fit._volumes(profile, 2)
    assert [v for v, _ in sets["train"]] == ["seed 0", "seed 1"]
    assert torch.equal(sets["train"][1][1], randomized_slab(1, (8, 64, 64))[0])
    assert [v for v, _ in sets["unseen"]] == [f"seed {fit.UNSEEN_SEED0}", f"seed {fit.UNSEEN_SEED0 + 1}"]
    assert fit.UNSEEN_SEED0 > load_profile("default").real_mri.n_slabs
    assert {v for v, _ in sets["tuning scans"]} == {n for n, s in REAL_SCANS.items() if s.role == "tuning"}
    with pytest.raises(ValueError, match="--n 5: the training slabs are only real_mri.n_slabs = 4"):
        fit._volumes(profile, 5)

    results = REPO / "benchmarks" / "results"
    rows = tables.read_csv_rows(results / "real_mri_prior_fit.csv")
    for r in rows:
        r["sigma"], r["psnr"], r["noisy_psnr"] = float(r["sigma"]), float(r["psnr"]), float(r["noisy_psnr"])
    priors = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "TV"))
    text = fit.report(rows, "default", priors, 2)
    strip = lambda s: re.sub(r"code [0-9a-f]{10}", "code", s)  # noqa: E731
    assert strip(text) == strip((results / "real_mri_prior_fit.md").read_text())
    shipped = "checkpoints/mri_general_lownoise"  # the prior the README's conclusion is about (shipped until 2026-12-04)

    def lead(s, sigma):
        by = {(r["volume"], r["method"]): r["psnr"] for r in rows if r["set"] == s and r["sigma"] == sigma}
        d = [by[(v, shipped)] - by[(v, "TV")] for v, m in by if m == "TV"]
        return sum(d) / len(d)

    assert abs(lead("train", 0.03) - lead("unseen", 0.03)) < 0.05
    assert lead("tuning scans", 0.03) > lead("unseen", 0.03) > 0
    sys.modules.pop("bench_real_mri_prior_fit", None)


def test_deepened_network_computes_what_the_original_does():
    """real_mri_prior_depth.deepen: one more residual block per level, the same function (before any
    training), on a small random network and on the shipped prior's architecture; the preset that
    fine-tunes it has the deepened architecture."""
    from dataclasses import replace

    from paperlib.diffusion.train_config import TRAIN_PRESETS
    from paperlib.diffusion.unet3d import PRESETS, UNet3D

    depth = load_benchmark("real_mri_prior_depth")
    for cfg in (PRESETS["ci"], PRESETS["default"]):
        torch.manual_seed(0)
        model = UNet3D(cfg).eval()
        for p in model.parameters():  # zero-initialised parts (position biases) random too
            torch.nn.init.normal_(p, std=0.05)
        deep = depth.deepen(model).eval()
        assert deep.cfg == replace(cfg, num_res_blocks=cfg.num_res_blocks + 1)
        assert sum(p.numel() for p in deep.parameters()) > sum(p.numel() for p in model.parameters())
        x = torch.randn(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            a, b = model(x, torch.tensor([3, 700])), deep(x, torch.tensor([3, 700]))
        assert a.abs().max() > 0.01 and torch.allclose(a, b, atol=1e-7, rtol=1e-5)
    assert TRAIN_PRESETS["mri_general_deep"].model == replace(PRESETS["default"], num_res_blocks=2)
    # without --init-from the preset starts from the folder the script writes by default, never from scratch
    from paperlib import cli
    from paperlib.diffusion.train_config import FINE_TUNE_BASES

    assert str(cli.prior_dir("mri", FINE_TUNE_BASES["mri_general_deep"]).relative_to(REPO)) == depth.OUT
    # the size benchmarks/results/real_mri_prior_depth.md states (1.66 M)
    assert round(sum(p.numel() for p in UNet3D(TRAIN_PRESETS["mri_general_deep"].model).parameters()) / 1e6, 2) == 1.66
    sys.modules.pop("bench_real_mri_prior_depth", None)


def test_prior_cost_report_renders_the_committed_results_and_its_ratios():
    """real_mri_prior_cost.py: the committed report re-renders from its CSV (every registered scan,
    both priors), and the summary's ratio is the ratio of the sums of seconds per call."""
    from paperlib import tables
    from paperlib.data.real_mri import REAL_SCANS

    cost = load_benchmark("real_mri_prior_cost")
    results = REPO / "benchmarks" / "results"
    rows = tables.read_csv_rows(results / "real_mri_prior_cost.csv")
    assert {r["scan"] for r in rows} == set(REAL_SCANS)
    assert [p for p in dict.fromkeys(r["prior"] for r in rows)] == list(cost.CANDIDATES)
    text = cost.report(rows)
    assert text.splitlines()[3:] == (results / "real_mri_prior_cost.md").read_text().splitlines()[3:]
    fake = [{"scan": s, "role": "held_out", "shape": "4x32x32", "prior": p, "parameters": n, "seconds_per_call": t,
             "ratio_to_first": t / t0, "repeats": 1, "precision": "float32", "threads": 1, "git_commit": "abc"}
            for s, t0, t1 in (("a", 1.0, 3.0), ("b", 3.0, 3.0)) for p, n, t in (("p", 1, t0), ("q", 2, t1))]
    line = next(l for l in cost.report(fake).splitlines() if l.startswith("| q | 2 |"))
    assert "| 6.000 | 1.50x | 2.00x (1.00x - 3.00x) |" in line  # sums 6 / 4; per-scan ratios 3 and 1
    sys.modules.pop("bench_real_mri_prior_cost", None)
