"""Load a script of ``benchmarks/`` as a module, for the tests of the benchmark scripts.

The scripts import their siblings (``from _cli import bench_parser``) as Python allows a script run
from its folder; loaded from a test, that folder must be on ``sys.path`` too. The module is
registered in ``sys.modules`` under ``bench_<name>`` (dataclasses look their module up there).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` executed as the module ``bench_<name>``."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
