"""Table 3's machinery (paperlib.experiments.generation) on the ci profile's tiny priors."""
import pytest
import torch

from paperlib.config import load_profile
from paperlib.experiments import generation as gen


@pytest.fixture(scope="module")
def ci():
    return load_profile("ci")


def test_generate_is_seeded_and_batched(ci):
    priors = gen.load_priors(ci, "mri")
    shape = tuple(ci.mri.shape)
    a = gen.generate(priors["whole_depth"], 3, shape, steps=2, generator=torch.Generator().manual_seed(1), batch=2)
    b = gen.generate(priors["whole_depth"], 3, shape, steps=2, generator=torch.Generator().manual_seed(1), batch=2)
    c = gen.generate(priors["whole_depth"], 3, shape, steps=2, generator=torch.Generator().manual_seed(2), batch=2)
    assert a.shape == (3, *shape) and torch.equal(a, b) and not torch.equal(a, c)
    assert len(priors["whole_depth"].models) == 1 and len(priors["partitioned"].models) == 2


def test_whole_depth_prior_must_be_set_and_single(ci, tmp_path):
    missing = ci.model_copy(update={"prior": ci.prior.model_copy(update={"single_checkpoint": None})})
    with pytest.raises(ValueError, match="prior.single_checkpoint is not set"):
        gen.load_priors(missing, "mri")
    wrong = ci.model_copy(update={"prior": ci.prior.model_copy(update={"single_checkpoint": ci.prior.checkpoint})})
    with pytest.raises(ValueError, match="expected one network over the whole depth, got 2 groups"):
        gen.load_priors(wrong, "mri")
    with pytest.raises(ValueError, match="modality"):
        gen.load_priors(ci, "ct")


def test_reference_set_is_the_test_split_in_prior_units(ci):
    from paperlib.data.brain import load_split

    ref = gen.reference_set(ci, "mri", 3)
    test = load_split(ci.mri, "test").images
    assert ref.shape == (3, *ci.mri.shape)
    assert torch.equal(ref[: test.shape[0]], test[:3].float())  # the first volumes are Table 1's test volumes
    stem = gen.reference_set(ci, "stem", 2)
    assert stem.shape[0] == 2 and float(stem.max()) < 20  # V*Angstrom / data_scale, order 1
    with pytest.raises(ValueError, match="n: expected >= 2"):
        gen.reference_set(ci, "mri", 1)


def test_rows_have_every_model_draw_and_a_finite_score(ci):
    rows = gen.generation_rows(ci, "stem")
    t3 = ci.tab3
    assert len(rows) == len(gen.MODELS) * t3.draws * len(t3.extractors)
    assert {r["model"] for r in rows} == set(gen.MODELS)
    for r in rows:
        assert r["fvd"] >= 0 and r["jedi"] == pytest.approx(r["jedi"]) and r["n_reference"] == t3.n_reference
        assert r["extractor_name"] == "project-stem"
    # independent draws give different generated sets, hence different distances
    part = [r["fvd"] for r in rows if r["model"] == "partitioned"]
    assert len(set(part)) == t3.draws
