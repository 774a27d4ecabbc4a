"""Method registries: the reconstructions of one modality under their table names.

A method is any callable ``(operator, measurement, profile, generator) -> (D, H, W) volume``.
Stochastic methods (DART, DRIFT, projection-based sampling) run once per seed of a table;
deterministic ones once per case, with the first seed's generator.

>>> reg = Registry("toy")
>>> @reg.register("double", stochastic=True)
... def _double(op, y, profile, gen):
...     return 2 * y
>>> [(c, m.name, s) for c, m, s in reg.jobs(["a"], ["double"], (0, 1))]
[('a', 'double', 0), ('a', 'double', 1)]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

MethodFn = Callable[..., Any]


@dataclass(frozen=True)
class Method:
    name: str
    fn: MethodFn
    stochastic: bool = False


class Registry(dict):
    """``{name: Method}`` with a decorator to add methods and the job list of a table run."""

    def __init__(self, modality: str) -> None:
        super().__init__()
        self.modality = modality

    def register(self, name: str, *, stochastic: bool = False) -> Callable[[MethodFn], MethodFn]:
        """Decorator adding ``fn`` under ``name``."""

        def deco(fn: MethodFn) -> MethodFn:
            self[name] = Method(name, fn, stochastic)
            return fn

        return deco

    def jobs(self, cases: Sequence[Any], methods: Sequence[str], seeds: Sequence[int]) -> list[tuple[Any, Method, int]]:
        """``(case, method, seed)`` for every case and method, every seed for stochastic methods.

        Raises ``ValueError`` naming unknown methods (and the registered ones) or an empty seed list.
        """
        unknown = [m for m in methods if m not in self]
        if unknown:
            raise ValueError(f"methods: unknown {self.modality} methods {unknown}; registered: {sorted(self)}")
        if not seeds:
            raise ValueError("seeds: expected at least one seed")
        return [(case, self[m], int(seed)) for case in cases for m in methods
                for seed in (seeds if self[m].stochastic else seeds[:1])]
