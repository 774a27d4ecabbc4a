"""FVD's Frechet distance and JEDi against closed forms, scipy and torchmetrics; the video extractors' loaders."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from paperlib.io import InputValidationError
from paperlib.metrics.video import (EXTRACTOR_FILES, FewSamplesWarning, frame_indices, frechet_distance,
                                    frechet_distance_from_statistics, gaussian_statistics, jedi, load_extractor,
                                    polynomial_mmd2, set_distances, volume_features, volumes_to_frames)

A = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
B = [[7, 6, 5], [4, 3, 2], [1, 1, 8], [0, 2, 5]]


def exact_sample(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n points whose sample mean and sample covariance (divisor n - 1) are exactly ``mean`` and ``cov``."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    whitening = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)))
    z = z @ whitening.T                      # sample covariance exactly I
    return z @ np.linalg.cholesky(cov).T + mean


def random_spd(rng: np.random.Generator, f: int) -> np.ndarray:
    m = rng.standard_normal((f, f))
    return m @ m.T + 0.1 * np.eye(f)


def test_polynomial_mmd_reference_number():
    assert polynomial_mmd2(A, B) == pytest.approx(270.7222222, abs=1e-6)
    assert round(polynomial_mmd2(A, B), 2) == 270.72
    assert jedi(A, B) == pytest.approx(27072.22222, abs=1e-4)


def test_polynomial_mmd_equals_second_moment_distance():
    # k(x, y) = (<x, y> / F)^2 is the inner product of x x^T / F, so MMD^2 is a Frobenius distance.
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((11, 5)) + 0.3
    closed = np.sum((a.T @ a / 7 - b.T @ b / 11) ** 2) / 5 ** 2
    assert polynomial_mmd2(a, b) == pytest.approx(closed, rel=1e-12)
    assert jedi(a, b) == pytest.approx(100 * closed, rel=1e-12)
    # general kernel: brute force over pairs
    k = lambda x, y: (0.7 * x @ y + 1.5) ** 3  # noqa: E731
    brute = (np.mean([[k(x, y) for y in a] for x in a]) + np.mean([[k(x, y) for y in b] for x in b])
             - 2 * np.mean([[k(x, y) for y in b] for x in a]))
    assert polynomial_mmd2(a, b, degree=3, gamma=0.7, coef0=1.5) == pytest.approx(brute, rel=1e-12)


def test_mmd_identity_symmetry_and_tensor_input():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((9, 4))
    assert jedi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert jedi(a, b) == pytest.approx(jedi(b, a), rel=1e-12)
    assert jedi(torch.tensor(a, dtype=torch.float32), b) == pytest.approx(jedi(a.astype(np.float32), b), rel=1e-12)
    assert jedi(a, b) > 0
    # the degree-2 homogeneous kernel is blind to sign flips of whole vectors
    assert jedi(-a, b) == pytest.approx(jedi(a, b), rel=1e-12)


def test_frechet_known_gaussians_closed_form():
    assert frechet_distance_from_statistics([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0])) == 7.0
    rng = np.random.default_rng(2)
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 0.5])
    cov_a, cov_b = np.diag([1.0, 2.0, 3.0]), np.diag([4.0, 1.0, 0.5])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(np.diag(cov_a)) - np.sqrt(np.diag(cov_b))) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)
        got = frechet_distance(exact_sample(rng, 20, mean_a, cov_a), exact_sample(rng, 30, mean_b, cov_b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_non_commuting_against_scipy_and_torchmetrics():
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(3)
    f = 6
    mean_a, mean_b = rng.standard_normal(f), rng.standard_normal(f)
    cov_a, cov_b = random_spd(rng, f), random_spd(rng, f)
    scipy_value = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                   - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
    ours = frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b)
    assert ours == pytest.approx(scipy_value, rel=1e-9)
    tm = float(_compute_fid(*(torch.tensor(v) for v in (mean_a, cov_a, mean_b, cov_b))))
    assert ours == pytest.approx(tm, rel=1e-9)
    # from samples with exactly these statistics
    a, b = exact_sample(rng, 40, mean_a, cov_a), exact_sample(rng, 50, mean_b, cov_b)
    assert frechet_distance(a, b) == pytest.approx(scipy_value, rel=1e-9)


def test_frechet_large_sample_converges_to_population_value():
    rng = np.random.default_rng(4)
    cov_a, cov_b = np.diag([1.0, 0.25]), np.array([[2.0, 0.5], [0.5, 1.0]])
    a = rng.multivariate_normal([0, 0], cov_a, size=20000)
    b = rng.multivariate_normal([0.5, 0], cov_b, size=20000)
    population = frechet_distance_from_statistics([0, 0], cov_a, [0.5, 0], cov_b)
    assert frechet_distance(a, b) == pytest.approx(population, abs=0.03)


def test_frechet_identity_symmetry_invariances():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((50, 4)), 1.5 * rng.standard_normal((60, 4)) + 0.2
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10)
    d = frechet_distance(a, b)
    assert d > 0.5
    assert frechet_distance(b, a) == pytest.approx(d, rel=1e-10)
    shift = rng.standard_normal(4) * 10
    assert frechet_distance(a + shift, b + shift) == pytest.approx(d, rel=1e-9)
    rotation, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    assert frechet_distance(a @ rotation, b @ rotation) == pytest.approx(d, rel=1e-9)
    assert frechet_distance(3 * a, 3 * b) == pytest.approx(9 * d, rel=1e-9)
    # order of the vectors in a set does not matter
    assert frechet_distance(a[::-1], b[rng.permutation(60)]) == pytest.approx(d, rel=1e-10)


def test_frechet_singular_covariance_is_finite_and_warns():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    with pytest.warns(FewSamplesWarning, match="N = 5 feature vectors of F = 8"):
        d = frechet_distance(a, b)
    assert np.isfinite(d) and d > 0
    with pytest.warns(FewSamplesWarning, match="fewer than 10"):
        frechet_distance(rng.standard_normal((9, 2)), rng.standard_normal((40, 2)), min_samples=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(rng.standard_normal((40, 2)), rng.standard_normal((40, 2)), min_samples=10)


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((1, 3)), np.zeros((4, 3)), "feats_a: expected at least 2"),
    (np.zeros((4, 3)), np.zeros((4, 2)), "same feature dimension F, got 3 and 2"),
    (np.zeros((4, 3, 1)), np.zeros((4, 3)), r"feats_a: expected an \(N, F\) feature matrix"),
    (np.zeros((4, 3)), np.full((4, 3), np.nan), "feats_b: expected finite"),
])
def test_frechet_rejects_bad_input(a, b, match):
    with pytest.raises(InputValidationError, match=match):
        frechet_distance(a, b)


def test_set_distances_row():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((40, 3)), rng.standard_normal((50, 3)) + 1
    row = set_distances(a, b, min_samples=10)
    assert row == {"frechet": frechet_distance(a, b), "jedi": jedi(a, b), "n_a": 40, "n_b": 50, "feature_dim": 3,
                   "few_samples": False}
    with pytest.warns(FewSamplesWarning):
        assert set_distances(a[:3], b)["few_samples"] is True


def test_gaussian_statistics_and_mmd_validation():
    mean, cov = gaussian_statistics(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_allclose(mean, [1.0, 2.0])
    np.testing.assert_allclose(cov, [[2.0, 2.0], [2.0, 2.0]])
    with pytest.raises(InputValidationError, match="degree"):
        polynomial_mmd2(A, B, degree=0)
    with pytest.raises(InputValidationError, match="same feature dimension"):
        jedi(A, [[1.0, 2.0]])


# ---------------------------------------------------------------------------------------------
# extractors: tiny randomly initialised networks saved in the real formats
# ---------------------------------------------------------------------------------------------

class TinyI3D(torch.nn.Module):
    """Stands in for i3d_torchscript.pt: same call signature, and it checks the FVD call convention."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True,
                return_features: bool = False) -> torch.Tensor:
        if rescale or resize or not return_features:
            raise RuntimeError("expected rescale=False, resize=False, return_features=True")
        if x.shape[1] != 3 or x.shape[3] != 224 or x.shape[4] != 224:
            raise RuntimeError("expected (B, 3, T, 224, 224)")
        if bool(x.min() < -1.0) or bool(x.max() > 1.0):
            raise RuntimeError("expected values in [-1, 1]")
        h = self.conv(x).mean(dim=(2, 3, 4))
        frames = torch.full_like(h[:, :1], float(x.shape[2]))
        return torch.cat([h, x.mean(dim=(1, 2, 3, 4)).unsqueeze(1), frames], dim=1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights folder holding a tiny I3D (TorchScript), VideoMAE and V-JEPA 2 (save_pretrained)."""
    import transformers  # in the `test` extra (pyproject.toml): never skipped

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    with warnings.catch_warnings():  # TorchScript is deprecated in torch 2.13, but it is the I3D file's format
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(TinyI3D()), str(folder / "i3d_torchscript.pt"))
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=16, tubelet_size=2)
    transformers.VideoMAEModel(transformers.VideoMAEConfig(
        image_size=32, num_frames=4, intermediate_size=64, **small)).save_pretrained(folder / "videomae")
    transformers.VJEPA2Model(transformers.VJEPA2Config(
        crop_size=32, frames_per_clip=4, pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1,
        num_pooler_layers=1, **small)).save_pretrained(folder / "vjepa2")
    return folder


def volumes(n=3, shape=(6, 40, 48), seed=0):
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def test_frames_convention():
    assert frame_indices(16, 4).tolist() == [0, 5, 10, 15]
    assert frame_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    assert frame_indices(5, None).tolist() == [0, 1, 2, 3, 4]
    vol = torch.zeros(1, 4, 20, 40)
    vol[0, 2] = 2.0                 # one slice above the value range: clipped to 1
    vol[0, 1, :, 6:34] = 0.5        # a centred stripe wider than the crop fills it
    frames = volumes_to_frames(vol, num_frames=8, size=10, value_range=(0.0, 2.0))
    assert frames.shape == (1, 8, 3, 10, 10) and frames.dtype == torch.float32
    assert torch.equal(frames[:, :, 0], frames[:, :, 2])                    # grey -> RGB
    assert frames.min() >= 0 and frames.max() <= 1
    np.testing.assert_allclose(frames[0, frame_indices(4, 8) == 2].numpy(), 1.0)
    np.testing.assert_allclose(frames[0, frame_indices(4, 8) == 1].numpy(), 0.25, atol=1e-6)
    with pytest.raises(InputValidationError, match="value_range"):
        volumes_to_frames(vol, num_frames=2, size=8, value_range=(1.0, 1.0))


def test_i3d_torchscript_loader_and_call_convention(weights):
    extractor = load_extractor("i3d", weights_dir=weights)
    assert extractor.name == "i3d" and len(extractor.sha256) == 64
    feats = volume_features(volumes(), extractor, batch_size=2)
    assert feats.shape == (3, 6) and feats.dtype == np.float64
    np.testing.assert_allclose(feats[:, 5], 16.0)                       # FVD's 16-frame clips
    const = torch.full((2, 5, 30, 30), 0.25)
    np.testing.assert_allclose(volume_features(const, extractor)[:, 4], -0.5, atol=1e-6)   # [0, 1] -> [-1, 1]
    eight = load_extractor(weights / "i3d_torchscript.pt", num_frames=None)
    np.testing.assert_allclose(volume_features(const, eight)[:, 5], 5.0)  # all slices


@pytest.mark.parametrize("name, folder, cls", [("videomae", "videomae", "VideoMAEModel"),
                                               ("vjepa", "vjepa2", "VJEPA2Model")])
def test_transformers_loaders(weights, tmp_path, name, folder, cls):
    extractor = load_extractor(name, weights_dir=weights)
    assert type(extractor.model).__name__ == cls and extractor.num_frames == 4 and extractor.size == 32
    vols = volumes(n=5)
    feats = volume_features(vols, extractor, batch_size=2)
    assert feats.shape == (5, 32) and np.isfinite(feats).all()
    # deterministic, independent of the batch, equal to the documented pipeline done by hand
    np.testing.assert_allclose(volume_features(vols, extractor, batch_size=5), feats, rtol=1e-5, atol=1e-6)
    frames = volumes_to_frames(vols, num_frames=4, size=32)
    video = (frames - torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        out = (extractor.model(pixel_values=video) if name == "videomae"
               else extractor.model(pixel_values_videos=video, skip_predictor=True)).last_hidden_state
    np.testing.assert_allclose(out.mean(dim=1).double().numpy(), feats, rtol=1e-5, atol=1e-6)
    # the other model's folder under this name is refused
    swapped = tmp_path / folder
    shutil.copytree(weights / ("vjepa2" if name == "videomae" else "videomae"), swapped)
    with pytest.raises(InputValidationError, match="expected model_type"):
        load_extractor(name, weights_dir=tmp_path)


def test_vjepa_classifier_folder_uses_attentive_pooler(tmp_path):
    import transformers

    torch.manual_seed(1)
    config = transformers.VJEPA2Config(crop_size=32, frames_per_clip=4, hidden_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, pred_hidden_size=32, pred_num_attention_heads=2,
                                       pred_num_hidden_layers=1, num_pooler_layers=1, num_labels=3)
    transformers.VJEPA2ForVideoClassification(config).save_pretrained(tmp_path / "vjepa2")
    extractor = load_extractor("vjepa", weights_dir=tmp_path)
    assert "attentive pooler" in extractor.convention
    feats = volume_features(volumes(n=2), extractor)
    video = (volumes_to_frames(volumes(n=2), num_frames=4, size=32) - extractor.mean) / extractor.std
    with torch.no_grad():
        pooled = extractor.model.pooler(extractor.model.vjepa2(pixel_values_videos=video).last_hidden_state)
    np.testing.assert_allclose(pooled.double().numpy(), feats, rtol=1e-5, atol=1e-6)


def test_load_extractor_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_WEIGHTS", str(tmp_path / "env"))
    with pytest.raises(InputValidationError, match=r"no i3d_torchscript.pt found; looked in .*given.*env"):
        load_extractor("i3d", weights_dir=tmp_path / "given")
    with pytest.raises(InputValidationError, match="expected one of"):
        load_extractor("inception")
    bad = tmp_path / "i3d_torchscript.pt"
    bad.write_bytes(b"not a torchscript archive")
    with pytest.raises(InputValidationError, match="expected a TorchScript I3D"):
        load_extractor("i3d", weights_dir=tmp_path)
    (tmp_path / "videomae").mkdir()
    (tmp_path / "videomae" / "config.json").write_text('{"model_type": "videomae"}')
    with pytest.raises(InputValidationError, match="expected model.safetensors"):
        load_extractor("videomae", weights_dir=tmp_path)
    with pytest.raises(InputValidationError, match="volumes: expected an"):
        volume_features(torch.zeros(3, 4, 4), "project-mri")
    assert set(EXTRACTOR_FILES) == {"project-mri", "project-stem", "i3d", "videomae", "vjepa"}
