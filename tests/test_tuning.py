"""The one grid search (paperlib.recon.tuning) that tune_weight and tune_stem share."""
import pytest

from paperlib.recon.tuning import grid_search


def test_grid_search_scores_every_combination_on_every_case():
    calls = []

    def evaluate(case, a, b, c):
        calls.append((case, a, b, c))
        return {"score": -abs(a - case) - b, "other": 10.0 * case}

    result = grid_search(evaluate, [1.0, 3.0], {"a": [0.0, 2.0, 4.0], "b": [0.5, 0.0]}, fixed={"c": "x", "b": 9.0})
    # every combination x case, the last grid name fastest, fixed arguments passed (grid wins)
    assert len(calls) == 12 and calls[:2] == [(1.0, 0.0, 0.5, "x"), (3.0, 0.0, 0.5, "x")]
    assert [(r["a"], r["b"]) for r in result.rows] == [(0.0, 0.5), (0.0, 0.0), (2.0, 0.5), (2.0, 0.0), (4.0, 0.5),
                                                       (4.0, 0.0)]
    assert list(result.rows[0]) == ["a", "b", "score", "other"]
    assert result.rows[3] == {"a": 2.0, "b": 0.0, "score": -1.0, "other": 20.0}  # means over the two cases
    assert result.best == {"c": "x", "b": 0.0, "a": 2.0}


def test_grid_search_ties_go_to_the_first_and_the_criterion_is_chosen():
    result = grid_search(lambda case, w: {"score": 1.0, "neg": -w}, ["only"], {"w": [3.0, 1.0, 2.0]})
    assert result.best == {"w": 3.0}
    assert grid_search(lambda case, w: {"score": 1.0, "neg": -w}, ["only"], {"w": [3.0, 1.0, 2.0]},
                       criterion="neg").best == {"w": 1.0}


def test_grid_search_errors_name_the_argument():
    evaluate = lambda case, w: {"score": w}
    with pytest.raises(ValueError, match="cases: expected at least one"):
        grid_search(evaluate, [], {"w": [1.0]})
    with pytest.raises(ValueError, match="grid: expected at least one value for every name"):
        grid_search(evaluate, [0], {"w": []})
    with pytest.raises(ValueError, match="grid: expected"):
        grid_search(evaluate, [0], {})
    with pytest.raises(ValueError, match=r"criterion: expected one of the scores \['score'\], got 'ssim'"):
        grid_search(evaluate, [0], {"w": [1.0]}, criterion="ssim")
