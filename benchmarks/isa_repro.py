"""How much do the bfloat16 results depend on the CPU's instruction set? (issue 19, reproducibility)

Two ``make figures`` runs on one machine give the same tables to every printed digit; across
machines one 4D-STEM DART number moved in the 4th decimal. oneDNN, which runs the networks'
bfloat16 convolutions, chooses its kernels by the CPU's instruction set (ISA), and the
environment variable ``ONEDNN_MAX_CPU_ISA`` caps that choice. This script runs 4D-STEM DART
(the profile's settings) on the first ``--n`` test crystals of Table 1 once per cap of ``--isas``,
each in a fresh process (the cap is read when oneDNN initialises), and writes the per-slice and
projection SSIM per crystal and cap to ``benchmarks/results/isa_repro.csv`` and ``isa_repro.md``.
``default`` is no cap (the best kernels this CPU has). A cap above what the CPU has changes nothing.

    python benchmarks/isa_repro.py --profile default
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from _cli import bench_parser, write_summary  # a sibling script (benchmarks/)

ISAS = ("default", "AVX2", "AVX512_CORE", "AVX512_CORE_BF16")


def run_here(profile_name: str, n: int, threads: int) -> list[dict]:
    """DART on the first ``n`` test crystals in this process (whose oneDNN cap the parent set)."""
    import torch

    from paperlib.config import load_profile
    from paperlib.experiments.runner import MODALITIES, run_cases
    from paperlib.experiments.stem import eval_cases

    torch.set_num_threads(threads)
    profile = load_profile(profile_name)
    rows, _ = run_cases(profile, MODALITIES["stem"], eval_cases(profile, "test", n), ["dart"], seeds=(0,),
                        progress=False)
    return [{"case": r["case"], "ssim_slice_mean": r["ssim_slice_mean"], "ssim_projected": r["ssim_projected"]}
            for r in rows]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, __file__)
    ap.add_argument("--n", type=int, default=3, help="test crystals (Table 1's first)")
    ap.add_argument("--isas", nargs="+", default=list(ISAS), help="ONEDNN_MAX_CPU_ISA values; 'default': unset")
    ap.add_argument("--here", action="store_true", help="(internal) run in this process, print JSON rows")
    args = ap.parse_args(argv)
    if args.here:
        print(json.dumps(run_here(args.profile, args.n, args.threads)))
        return 0
    from paperlib import tables
    from paperlib.provenance import git_commit

    rows = []
    for isa in args.isas:
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
        if isa != "default":
            env["ONEDNN_MAX_CPU_ISA"] = isa
        got = subprocess.run([sys.executable, __file__, "--profile", args.profile, "--n", str(args.n), "--threads",
                              str(args.threads), "--here"], env=env, stdout=subprocess.PIPE, text=True, check=True)
        rows += [{"isa": isa, **r} for r in json.loads(got.stdout.strip().splitlines()[-1])]
        print(f"{isa}: done", file=sys.stderr, flush=True)
    tables.write_csv_rows(rows, args.out)
    cases = list(dict.fromkeys(r["case"] for r in rows))
    lines = [f"# 4D-STEM DART under each oneDNN instruction-set cap (profile {args.profile})", "",
             f"{cpu_name()}, {args.threads} threads; first {args.n} test crystals of Table 1; per-slice / projection "
             f"SSIM; code {git_commit()[:10]}.", "",
             "| ONEDNN_MAX_CPU_ISA | " + " | ".join(cases) + " |", "|---|" + "---|" * len(cases)]
    for isa in args.isas:
        by = {r["case"]: r for r in rows if r["isa"] == isa}
        lines.append(f"| {isa} | " + " | ".join(f"{by[c]['ssim_slice_mean']:.6f} / {by[c]['ssim_projected']:.6f}"
                                                for c in cases) + " |")
    md = "\n".join(lines) + "\n"
    write_summary(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
