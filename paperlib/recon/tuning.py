"""One grid search for the hyper-parameters of every baseline, on validation cases.

:func:`grid_search` scores every combination of a grid on every case and returns all the
scores as rows (one dict a combination, which a caller can write as CSV, e.g. with
:func:`paperlib.tables.write_cases`) and the best combination. The MRI weight search
(:func:`paperlib.recon.mri_baselines.tune_weight`) and the 4D-STEM search
(:func:`paperlib.recon.stem_baselines.tune_stem`) are thin wrappers around it.

>>> result = grid_search(lambda case, a, b: {"score": -(a - case) ** 2 - b}, cases=[1.0, 2.0],
...                    grid={"a": [0.0, 1.5, 3.0], "b": [0.0, 1.0]})
>>> result.best
{'a': 1.5, 'b': 0.0}
>>> [(r["a"], r["b"], r["score"]) for r in result.rows][:3]
[(0.0, 0.0, -2.5), (0.0, 1.0, -3.5), (1.5, 0.0, -0.25)]
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

__all__ = ["GridSearchResult", "grid_search"]


@dataclass(frozen=True)
class GridSearchResult:
    """What :func:`grid_search` found.

    Attributes
    ----------
    best : the keyword arguments of the best combination: ``fixed`` updated with its grid values.
    rows : one dict per combination, in grid order (the last name varies fastest): its grid
        values, then the mean over cases of every score ``evaluate`` returned.
    """

    best: dict
    rows: list[dict]


def grid_search(
    evaluate: Callable[..., Mapping[str, float]],
    cases: Sequence[Any],
    grid: Mapping[str, Iterable],
    *,
    criterion: str = "score",
    fixed: Mapping[str, Any] | None = None,
    progress: bool = False,
    desc: str = "grid search",
) -> GridSearchResult:
    """Score every combination of ``grid`` on every case; the best has the highest mean ``criterion``.

    Parameters
    ----------
    evaluate : ``evaluate(case, **fixed, **combination) -> {score name: float}``, the scores of
        one case (e.g. run a reconstruction and compare it with the case's ground truth).
    cases : the validation cases (any objects ``evaluate`` understands); never test cases.
    grid : ``{name: values}``; every combination (Cartesian product, in order) is tried.
    criterion : the score to maximise (ties: the first combination in grid order).
    fixed : keyword arguments passed unchanged to every call (overridden by grid names).
    progress : tqdm bar over the ``combinations x cases`` evaluations, labelled ``desc``.

    Returns
    -------
    :class:`GridSearchResult` with ``best`` and ``rows`` (each score averaged over cases as
    ``sum(values) / len(values)``, float).
    """
    if not cases:
        raise ValueError("cases: expected at least one validation case, got none")
    names = list(grid)
    values = [list(grid[name]) for name in names]
    if not names or any(not v for v in values):
        raise ValueError(f"grid: expected at least one value for every name, got {dict(zip(names, values))}")
    fixed = dict(fixed or {})
    combinations = list(itertools.product(*values))
    rows = []
    bar = tqdm(total=len(combinations) * len(cases), desc=desc, disable=not progress)
    for combination in combinations:
        params = dict(zip(names, combination))
        per_case: dict[str, list[float]] = {}
        for case in cases:
            for key, value in evaluate(case, **{**fixed, **params}).items():
                per_case.setdefault(key, []).append(value)
            bar.update()
        row = {**params, **{key: sum(v) / len(v) for key, v in per_case.items()}}
        if criterion not in row:
            bar.close()
            raise ValueError(f"criterion: expected one of the scores {sorted(per_case)}, got {criterion!r}")
        logger.info("%s %s", desc, row)
        rows.append(row)
    bar.close()
    best_row = max(rows, key=lambda r: r[criterion])
    return GridSearchResult({**fixed, **{name: best_row[name] for name in names}}, rows)
