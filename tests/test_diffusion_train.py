"""Training one slice group's prior: exact resume after a kill, logs, validation, export."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from paperlib import cli
from paperlib.diffusion import train as train_mod
from paperlib.diffusion.bundles import load_data_file
from paperlib.diffusion.checkpoints import CheckpointError, load_partitioned_prior, load_prior
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.train import TrainConfig, train, train_prior
from paperlib.diffusion.unet3d import UNet3DConfig


pytestmark = pytest.mark.usefixtures("one_thread")


MODEL = UNet3DConfig(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), heads=2,
                     head_dim=4, dropout=0.1)  # dropout: the global RNG must be restored too
CFG = TrainConfig(model=MODEL, schedule=ScheduleConfig("cosine", 100), num_groups=2, batch_size=2, grad_accum=2,
                  ema_decay=0.9, steps=6, ckpt_every=2, seed=3, hflip=True, slice_jitter=1, weights_dtype="float32")
GROUP = 1


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return torch.rand(5, 8, 16, 16, generator=torch.Generator().manual_seed(0))  # (N, D, H, W)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return train(CFG, data, out, group=GROUP, progress=False), out


def _assert_same_state(a, b):
    for name in ("model", "ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k}"
    oa, ob = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert oa["param_groups"] == ob["param_groups"]
    for i in oa["state"]:
        for k, v in oa["state"][i].items():
            assert torch.equal(v, ob["state"][i][k]), f"optimizer state {i}.{k}"


def _losses(path):
    return [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines())]


def test_resume_after_stop_equals_straight_run(data, straight, tmp_path):
    ref, ref_dir = straight
    half = train(CFG, data, tmp_path, group=GROUP, progress=False, max_steps=3)  # 3: between checkpoints
    assert half.step == 3 and half.prior_path is None
    torch.manual_seed(12345)  # a new process state: global RNG elsewhere
    resumed = train(CFG, data, tmp_path, group=GROUP, progress=False)
    assert resumed.step == CFG.steps
    _assert_same_state(ref, resumed)
    assert _losses(resumed.log_path) == _losses(ref.log_path)
    assert [s for s, _ in _losses(ref.log_path)] == list(range(1, CFG.steps + 1))


def test_resume_after_kill_mid_interval_equals_straight_run(data, straight, tmp_path, monkeypatch):
    """Killed during step 4 (last checkpoint at step 2): the resumed run redoes steps 3-4 identically."""
    ref, _ = straight
    calls = {"n": 0}
    real = train_mod._sample_batch

    def dying(*args):
        calls["n"] += 1
        if calls["n"] == 3 * CFG.grad_accum + 2:  # the 2nd micro-batch of step 4
            raise KeyboardInterrupt("simulated kill")
        return real(*args)

    monkeypatch.setattr(train_mod, "_sample_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        train(CFG, data, tmp_path, group=GROUP, progress=False)
    monkeypatch.setattr(train_mod, "_sample_batch", real)
    state = torch.load(tmp_path / f"train_state_group{GROUP}.pt", weights_only=True)
    assert state["step"] == 2
    resumed = train(CFG, data, tmp_path, group=GROUP, progress=False)
    _assert_same_state(ref, resumed)
    assert _losses(resumed.log_path) == _losses(ref.log_path)


_KILLED_RUN = """
import json, sys, time, torch
torch.set_num_threads(1)
from paperlib.diffusion import train as train_mod
from paperlib.diffusion.train import TrainConfig, train
real = train_mod._sample_batch
def slow(*args):  # slows the run down so the parent can kill it mid-way; the numbers are unchanged
    time.sleep(0.05)
    return real(*args)
train_mod._sample_batch = slow
cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))
train(cfg, torch.load(sys.argv[2], weights_only=True), sys.argv[3], group=int(sys.argv[4]), progress=False)
"""


def test_sigkill_then_resume_equals_straight_run(data, straight, tmp_path):
    """A real kill (SIGKILL of another process) right after its first checkpoint; resume here."""
    ref, _ = straight
    torch.save(data, tmp_path / "data.pt")
    out = tmp_path / "run"
    state = out / f"train_state_group{GROUP}.pt"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, json.dumps(CFG.to_dict()), str(tmp_path / "data.pt"),
                             str(out), str(GROUP)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = torch.load(state, weights_only=True)["step"]
    assert 2 <= killed_at < CFG.steps
    resumed = train(CFG, data, out, group=GROUP, progress=False)
    _assert_same_state(ref, resumed)
    assert _losses(resumed.log_path) == _losses(ref.log_path)


def test_export_and_caller_rng_untouched(data, tmp_path):
    before = torch.get_rng_state()
    cfg = replace(CFG, steps=2, weights_dtype="float16")
    res = train(cfg, data, tmp_path, group=0, progress=False, dataset={"name": "random"})
    assert torch.equal(torch.get_rng_state(), before)  # library code does not disturb the global RNG
    models, manifests = load_prior(res.prior_path)
    m = manifests[0]
    assert (m["group"], m["num_groups"], m["group_size"], m["steps"]) == (0, 2, 4, 2)
    assert m["dataset"]["name"] == "random" and m["final_loss"] > 0
    assert m["train_config"] == cfg.to_dict()
    ema = res.ema.state_dict()
    for k, v in models[0].state_dict().items():
        assert torch.allclose(v, ema[k], atol=1e-3, rtol=1e-3)  # float16 storage


def test_resume_refuses_other_config_or_data(data, tmp_path):
    train(replace(CFG, steps=2), data, tmp_path, group=GROUP, progress=False)
    with pytest.raises(CheckpointError, match=r"config mismatch.*\['lr'\]"):
        train(replace(CFG, lr=1e-3), data, tmp_path, group=GROUP, progress=False)
    with pytest.raises(CheckpointError, match="training data differ"):
        train(CFG, data + 1, tmp_path, group=GROUP, progress=False)
    res = train(replace(CFG, steps=3), data, tmp_path, group=GROUP, progress=False)  # more steps: allowed
    assert res.step == 3
    res = train(replace(CFG, lr=1e-3, steps=1), data, tmp_path, group=GROUP, progress=False, resume=False)
    assert res.step == 1
    (tmp_path / f"train_state_group{GROUP}.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="unreadable training state"):
        train(CFG, data, tmp_path, group=GROUP, progress=False)


def test_input_validation(data, tmp_path):
    with pytest.raises(ValueError, match="cannot be split"):
        train(replace(CFG, num_groups=3), data, tmp_path, group=0, progress=False)
    with pytest.raises(ValueError, match=r"\(N, D, H, W\)"):
        train(CFG, data[0], tmp_path, group=0, progress=False)
    with pytest.raises(ValueError, match="group"):
        train(CFG, data, tmp_path, group=2, progress=False)
    with pytest.raises(ValueError, match="finite"):
        train(CFG, data * float("nan"), tmp_path, group=0, progress=False)
    with pytest.raises(ValueError, match="grad_accum"):
        replace(CFG, grad_accum=0)


def test_config_round_trip():
    assert TrainConfig.from_dict(json.loads(json.dumps(CFG.to_dict()))) == CFG
    with pytest.raises(ValueError, match="unknown keys"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_focus_draws_part_of_each_batch_at_low_timesteps(data):
    """``focus_fraction`` of each micro-batch draws ``t < focus_t``; without a focus the random stream
    (and so every earlier prior's training run) is what uniform draws alone give."""
    plain = train_mod._sample_batch(CFG, data, 0, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    torch.randint(data.shape[0], (CFG.batch_size,), generator=gen)  # the draws _sample_batch makes, in order
    torch.randint(-1, 2, (CFG.batch_size,), generator=gen)
    torch.rand(CFG.batch_size, generator=gen)
    t = torch.randint(100, (CFG.batch_size,), generator=gen)
    assert torch.equal(plain[1], t) and torch.equal(plain[2], torch.randn(plain[2].shape, generator=gen))
    cfg = replace(CFG, batch_size=400, focus_t=5, focus_fraction=0.75)
    ts = train_mod._sample_batch(cfg, data, 0, torch.Generator().manual_seed(5))[1]
    assert int(ts[:300].max()) < 5 and len(set(ts[:300].tolist())) == 5
    assert int(ts[300:].max()) >= 50  # the rest still covers the whole schedule
    for bad in ({"focus_fraction": 1.5, "focus_t": 5}, {"focus_fraction": 0.5}, {"focus_t": 101},
                {"focus_t": 2.5, "focus_fraction": 0.5}):
        with pytest.raises(ValueError, match="focus"):
            replace(CFG, **bad)


def test_main_trains_stem_from_the_profile_or_a_file(tmp_path, capsys, one_thread):
    from paperlib.config import load_profile

    profile_out = ["--modality", "stem", "--profile", "ci", "--out", str(tmp_path / "from_profile"), "--no-progress"]
    assert cli.train_main(profile_out + ["--steps", "1"]) == 0  # the ci crystals / stem_prior.data_scale
    _, manifests = load_prior(tmp_path / "from_profile")
    assert manifests[0]["dataset"]["scale"] == load_profile("ci").stem_prior.data_scale
    assert manifests[0]["dataset"]["modality"] == "stem" and manifests[0]["dataset"]["split"] == "train"
    argv = ["--modality", "stem", "--profile", "ci", "--out", str(tmp_path / "prior"), "--no-progress"]
    potentials = 40.0 * torch.rand(2, 8, 32, 32, generator=torch.Generator().manual_seed(0))  # V*Angstrom
    np.save(tmp_path / "pot.npy", potentials.numpy())
    assert cli.train_main(argv + ["--data", str(tmp_path / "pot.npy"), "--steps", "1"]) == 2
    assert "divide by a fixed scale" in capsys.readouterr().err  # unscaled potentials are refused
    assert cli.train_main(argv + ["--data", str(tmp_path / "pot.npy"), "--data-scale", "40", "--steps", "1"]) == 0
    _, manifests = load_prior(tmp_path / "prior")
    assert manifests[0]["dataset"]["scale"] == 40.0 and manifests[0]["dataset"]["modality"] == "stem"
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    assert cli.train_main(argv + ["--data", str(tmp_path / "bad.npy"), "--no-resume"]) == 2
    assert "bad.npy: unreadable" in capsys.readouterr().err
    assert cli.train_main(argv + ["--data", str(tmp_path / "missing.npy")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_exported_bundle_trains_the_same_prior_elsewhere(tmp_path, capsys, one_thread):
    """``--export-data`` then ``--data BUNDLE``: the same tensor, fingerprint and dataset block."""
    common = ["--modality", "stem", "--profile", "ci", "--no-progress", "--steps", "1"]
    assert cli.train_main(common + ["--out", str(tmp_path / "direct")]) == 0
    bundle = tmp_path / "stem_ci.pt"
    assert cli.train_main(common + ["--export-data", str(bundle)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*stem_ci*")) == ["stem_ci.pt"]  # no temporary left
    data, info = load_data_file(bundle, with_info=True)
    assert data.ndim == 4 and info["modality"] == "stem" and info["profile"] == "ci"
    assert cli.train_main(common + ["--data", str(bundle), "--out", str(tmp_path / "bundle")]) == 0
    (_, direct), (_, via) = load_prior(tmp_path / "direct"), load_prior(tmp_path / "bundle")
    assert via[0]["dataset"] == direct[0]["dataset"]  # incl. the fingerprint of the training tensor
    capsys.readouterr()
    # a scaled bundle refuses a second scale, and the modality must match
    assert cli.train_main(common + ["--data", str(bundle), "--data-scale", "2", "--out", str(tmp_path / "x")]) == 2
    assert "already scaled" in capsys.readouterr().err
    mri = ["--modality", "mri", "--profile", "ci", "--no-progress", "--steps", "1", "--out", str(tmp_path / "y")]
    assert cli.train_main(mri + ["--data", str(bundle)]) == 2
    assert "a stem bundle" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(1)}, tmp_path / "dict.pt")
    assert cli.train_main(common + ["--data", str(tmp_path / "dict.pt"), "--out", str(tmp_path / "z")]) == 2
    assert "not a paperlib.train_data/1 bundle" in capsys.readouterr().err
    assert cli.train_main(common + ["--export-data", str(tmp_path / "x.npy")]) == 2
    assert "expected a .pt file" in capsys.readouterr().err


def test_train_prior_trains_each_group_and_resumes(data, tmp_path):
    cfg = replace(CFG, steps=2)
    res = train_prior(cfg, data, tmp_path, progress=False)
    assert [r.step for r in res] == [2, 2] and all(r.model is None and r.optimizer is None for r in res)
    prior = load_partitioned_prior(tmp_path)
    assert prior.group_indices == [0, 1] and prior.depth == data.shape[1]
    for g, r in enumerate(res):
        for k, v in prior.models[g].state_dict().items():
            assert torch.equal(v, r.ema.state_dict()[k])  # float32 export
    again = train_prior(cfg, data, tmp_path, groups=[1], progress=False)  # already done: nothing to do
    assert again[0].step == 2 and _losses(again[0].log_path) == _losses(res[1].log_path)
    with pytest.raises(ValueError, match="distinct"):
        train_prior(cfg, data, tmp_path, groups=[0, 0], progress=False)


def test_main_trains_every_group_of_a_preset(tmp_path, monkeypatch, capsys):
    import paperlib.data.training

    monkeypatch.setattr(paperlib.data.training, "load_training_data",
                        lambda modality, profile, **kw: (torch.rand(2, 8, 32, 32), {"modality": modality}))
    argv = ["--modality", "mri", "--profile", "ci", "--out", str(tmp_path), "--steps", "1", "--no-progress"]
    assert cli.train_main(argv) == 0
    assert "rank 0: groups [0, 1]" in capsys.readouterr().out
    models, manifests = load_prior(tmp_path)
    assert [m["group"] for m in manifests] == [0, 1] and manifests[0]["dataset"]["modality"] == "mri"


def test_fine_tuning_starts_from_the_given_prior(data, tmp_path):
    base = train(replace(CFG, steps=2), data, tmp_path / "base", group=GROUP, progress=False)
    train(replace(CFG, steps=2), data, tmp_path / "base", group=0, progress=False)  # the folder needs every group
    cfg = replace(CFG, steps=1, loss="l2", lr=1e-5, init_from=str(tmp_path / "base"))
    tuned = train(cfg, data, tmp_path / "tuned", group=GROUP, progress=False)
    start, _ = load_prior(base.prior_path)
    fresh = train(replace(cfg, init_from=None), data, tmp_path / "fresh", group=GROUP, progress=False)
    # one Adam step moves each weight by at most ~lr from where it started: the base's weights
    # (themselves 2 steps of lr 1e-4 from the seed's initialisation, where the fresh run starts)
    dist = {name: max(float((p - q).detach().abs().max()) for p, q in zip(r.model.parameters(), start[0].parameters()))
            for name, r in (("tuned", tuned), ("fresh", fresh))}
    assert dist["tuned"] <= 1.5 * cfg.lr < 5 * cfg.lr < dist["fresh"], dist
    _, manifests = load_prior(tuned.prior_path)
    init = manifests[0]["init"]
    assert init["sha256"] == load_prior(base.prior_path)[1][0]["sha256"]
    assert (init["steps"], init["loss"]) == (2, "l1")
    with pytest.raises(CheckpointError, match="prediction"):  # a prior of another kind is refused
        train(replace(cfg, prediction="v"), data, tmp_path / "other", group=GROUP, progress=False)
    with pytest.raises(FileNotFoundError, match="init_from"):
        train(replace(cfg, init_from=str(tmp_path / "missing")), data, tmp_path / "x", group=GROUP, progress=False)


@pytest.mark.parametrize("profile", ["ci", "default", "paper"])
def test_make_train_writes_the_priors_the_profile_uses(profile):
    """The last stage of ``make train`` per modality writes the folder the profile reads its prior from."""
    from paperlib.config import load_profile
    from paperlib.paths import repo_root

    prof = load_profile(profile)
    stages = {"mri": [None], "stem": [None, "stem_default_l2"] if profile == "default" else [None]}  # as the Makefile
    for modality, checkpoint in (("mri", prof.prior.checkpoint), ("stem", prof.stem_prior.checkpoint)):
        preset = cli.train_preset(modality, profile, stages[modality][-1])
        assert cli.prior_dir(modality, preset) == repo_root() / checkpoint, (modality, preset)
    # the whole-depth priors (Figure 5, Table 3): make train's presets <modality>_single[_<profile>]
    for modality, single in (("mri", prof.prior.single_checkpoint), ("stem", prof.stem_prior.single_checkpoint)):
        preset = f"{modality}_single" + ("" if profile == "default" else f"_{profile}")
        assert cli.prior_dir(modality, cli.train_preset(modality, profile, preset)) == repo_root() / single
    assert cli.train_preset("mri", "default") == "mri_default" and cli.train_preset("stem", "ci") == "ci"
    with pytest.raises(ValueError, match="no training preset 'nope'"):
        cli.train_preset("mri", "nope")


def test_fine_tuning_preset_starts_from_its_base_presets_prior(tmp_path):
    """``stem_default_l2`` names no file: the command line points it at ``stem_default``'s folder."""
    from paperlib.diffusion.train_config import FINE_TUNE_BASES, TRAIN_PRESETS

    assert all(cfg.init_from is None for cfg in TRAIN_PRESETS.values())  # presets hard-code no paths
    args = cli._train_parser().parse_args(["--modality", "stem", "--profile", "default", "--preset", "stem_default_l2"])
    preset, cfg = cli._train_config(args)
    assert preset == "stem_default_l2" and FINE_TUNE_BASES[preset] == "stem_default"
    assert cfg.init_from == "checkpoints/stem_default"  # repository-relative, as the shipped manifest records
    assert replace(cfg, init_from=None) == TRAIN_PRESETS[preset]
    args = cli._train_parser().parse_args(["--modality", "stem", "--preset", "stem_default_l2",
                                           "--init-from", str(tmp_path), "--steps", "3"])
    _, cfg = cli._train_config(args)
    assert (cfg.init_from, cfg.steps) == (str(tmp_path.resolve()), 3)
    args = cli._train_parser().parse_args(["--modality", "mri", "--profile", "ci"])
    assert cli._train_config(args)[1].init_from is None


def test_diffusion_imports_no_data_sets():
    """The diffusion package takes tensors; loading data sets is paperlib.data's (and the CLI's) business."""
    code = ("import sys, paperlib.diffusion, paperlib.diffusion.train, paperlib.diffusion.bundles, "
            "paperlib.diffusion.evaluate, paperlib.diffusion.train_state\n"
            "print(sorted(m for m in sys.modules if m.startswith('paperlib.data')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_training_data_of_the_profiles(one_thread):
    """paperlib.data.training: the ci profile's MRI train split and its crystals' scaled potentials."""
    from paperlib.config import load_profile
    from paperlib.data.training import load_training_data

    ci = load_profile("ci")
    mri, info = load_training_data("mri", "ci")
    assert mri.shape == (ci.mri.n_train, *ci.mri.shape) and mri.dtype == torch.float32
    assert 0.0 <= float(mri.min()) and float(mri.max()) <= 1.0
    assert (info["modality"], info["profile"], info["profile_digest"]) == ("mri", "ci", ci.digest())
    stem, info = load_training_data("stem", "ci")
    p = ci.stem
    assert stem.shape == (ci.stem_eval.n_train, p.n_slices, p.gpts, p.gpts) and stem.dtype == torch.float32
    assert float(stem.min()) > -0.01 and 1.0 < float(stem.max()) <= 10.0  # abTEM rings slightly below 0
    assert info["scale"] == ci.stem_prior.data_scale and info["stem_digest"] == p.digest()
    # preset stem_anydepth: the same training crystals at a random depth of the box (issue 16)
    anywhere, info = load_training_data("stem", "ci", preset="stem_anydepth")
    assert anywhere.shape == stem.shape and info["stem"]["placement"] == "random"
    assert info["stem_digest"] == p.model_copy(update={"placement": "random"}).digest() != p.digest()
    def first_occupied(volumes):  # the first slice holding atoms, per crystal
        return [int(torch.nonzero(v.amax((1, 2)) > 0.1)[0]) for v in volumes]

    assert set(first_occupied(stem)) == {0} and max(first_occupied(anywhere)) > 0
    with pytest.raises(NotImplementedError, match="modality: expected one of"):
        load_training_data("ct", "ci")


def test_training_from_a_file_needs_no_profile_machinery(tmp_path):
    """scripts/train_priors_gpu.sh trains from bundles on a machine with torch but maybe no pydantic/yaml."""
    np.save(tmp_path / "vols.npy", torch.rand(2, 8, 32, 32, generator=torch.Generator().manual_seed(0)).numpy())
    code = ("import sys; sys.modules['pydantic'] = sys.modules['yaml'] = None\n"
            "from paperlib.cli import main\n"
            f"sys.exit(main(['train', '--modality', 'mri', '--profile', 'ci', '--data', {str(tmp_path / 'vols.npy')!r}, "
            f"'--steps', '1', '--out', {str(tmp_path / 'out')!r}, '--no-progress', '--threads', '1']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").glob("prior_group*.safetensors")) == [
        "prior_group0.safetensors", "prior_group1.safetensors"]


def test_float16_bundle_halves_the_file_and_loads_what_it_stores(tmp_path):
    """``export_data(dtype=float16)``: what ``load_data_file`` returns is the data rounded to float16,
    the record says so, and the fingerprint identifies the stored values (not the unrounded ones)."""
    from paperlib.diffusion.bundles import data_fingerprint, export_data

    data = torch.rand(4, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    full = export_data(tmp_path / "f32.pt", data, {"modality": "mri"})
    half = export_data(tmp_path / "f16.pt", data, {"modality": "mri"}, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    back, info = load_data_file(half, with_info=True)
    assert back.dtype == torch.float32 and info == {"modality": "mri", "storage": "float16"}
    assert torch.equal(back, data.half().float()) and not torch.equal(back, data)
    assert float((back - data).abs().max()) <= 2.0 ** -11
    assert data_fingerprint(back) != data_fingerprint(data)
    assert load_data_file(full, with_info=True)[1] == {"modality": "mri"}
    with pytest.raises(ValueError, match="export_data dtype: expected torch.float32 or torch.float16"):
        export_data(tmp_path / "bf16.pt", data, {}, dtype=torch.bfloat16)


def test_export_real_mri_data_script_writes_a_bundle_of_the_randomised_slabs(tmp_path):
    """scripts/export_real_mri_data.py: slabs of seeds 0.. equal randomized_slab's (to float16), provenance
    recorded, an existing --out refused."""
    from paperlib.data.randomized import GENERATOR_VERSION, randomized_slab

    out = tmp_path / "slabs.pt"
    script = [sys.executable, "scripts/export_real_mri_data.py", "--n", "2", "--workers", "1", "--out", str(out)]
    proc = subprocess.run(script, capture_output=True, text=True, cwd=cli.repo_root())
    assert proc.returncode == 0, proc.stderr[-2000:]
    data, info = load_data_file(out, with_info=True)
    assert tuple(data.shape) == (2, 8, 64, 64)
    assert torch.equal(data[1], randomized_slab(1, (8, 64, 64))[0].half().float())
    assert info == {"modality": "mri", "profile": "default", "source": "randomized", "generator_version": GENERATOR_VERSION,
                    "n": 2, "slab": [8, 64, 64], "slab_seed": 0, "shape": [2, 8, 64, 64], "storage": "float16"}
    proc = subprocess.run(script, capture_output=True, text=True, cwd=cli.repo_root())
    assert proc.returncode == 2 and f"--out {out}: exists" in proc.stderr


def test_gpu_candidate_presets_of_the_real_scan_prior_fit_the_checkpoint_limit():
    """The presets scripts/train_real_mri_prior_gpu.sh trains: the sizes their comment states, each
    prior under the 16 MB a shipped checkpoint may take (float16), the fine-tune's base the shipped one."""
    from paperlib.diffusion.train_config import FINE_TUNE_BASES, TRAIN_PRESETS
    from paperlib.diffusion.unet3d import UNet3D

    sizes = {}
    for name in ("mri_general_gpu", "mri_general_gpu_w24", "mri_general_gpu_w32"):
        cfg = TRAIN_PRESETS[name]
        n = sum(p.numel() for p in UNet3D(cfg.model).parameters())
        sizes[name] = round(n / 1e6, 1)
        assert 2 * n < 16e6 and cfg.weights_dtype == "float16" and cfg.batch_size == 32
    assert sizes == {"mri_general_gpu": 1.1, "mri_general_gpu_w24": 2.5, "mri_general_gpu_w32": 4.4}
    assert TRAIN_PRESETS["mri_general_gpu"].model == TRAIN_PRESETS["mri_general_lownoise"].model
    assert FINE_TUNE_BASES["mri_general_gpu"] == "mri_general_lownoise"
    assert "mri_general_gpu_w32" not in FINE_TUNE_BASES  # trained from scratch


def test_the_shipped_real_scan_prior_is_what_its_preset_and_bundle_make():
    """checkpoints/mri_general_gpu_w24 (the real-scan prior since 2026-12-04, trained on a GPU): its
    manifest's config is preset mri_general_gpu_w24's as it stands (so `train --preset ... --data
    BUNDLE` trains it again with the same recipe), its data the 768-slab float16 bundle of scripts/export_real_mri_data.py,
    its weights within the 16 MiB a shipped checkpoint may take; the manifest's sha256 is the file's."""
    import hashlib
    import json

    from paperlib.diffusion.train_config import TRAIN_PRESETS

    folder = cli.repo_root() / "checkpoints" / "mri_general_gpu_w24"
    manifest = json.loads((folder / "prior_group0.json").read_text())
    weights = folder / "prior_group0.safetensors"
    assert manifest["train_config"] == TRAIN_PRESETS["mri_general_gpu_w24"].to_dict()
    assert manifest["steps"] == TRAIN_PRESETS["mri_general_gpu_w24"].steps
    data = manifest["dataset"]
    assert (data["source"], data["n"], data["storage"], data["slab_seed"]) == ("randomized", 768, "float16", 0)
    assert manifest["size_bytes"] == weights.stat().st_size <= 16 * 2**20
    assert manifest["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert len((folder / "loss_group0.jsonl").read_text().splitlines()) == manifest["steps"]


@pytest.mark.parametrize("preset", ["mri_general_gpu", "mri_general_gpu_w24", "mri_general_gpu_w32"])
def test_gpu_presets_refuse_to_train_on_the_profile_data(preset, capsys, tmp_path):
    """Without --data a GPU preset would silently train on the profile's synthetic brains, not the
    randomised slabs it was made on: the CLI refuses, naming the bundle's export command."""
    assert cli.main(["train", "--modality", "mri", "--preset", preset, "--out", str(tmp_path / "prior")]) == 2
    err = capsys.readouterr().err
    assert f"preset {preset} trains on an exported bundle" in err and "scripts/export_real_mri_data.py" in err
