"""Command line: ``python -m paperlib COMMAND`` (or ``paperlib COMMAND``).

Commands (:data:`COMMANDS`; ``python -m paperlib --help`` lists them, ``python -m paperlib
COMMAND --help`` shows a command's options)
--------
data            generate (or load) and cache the MRI splits of a profile
tune-baselines  choose the CS-MRI and TV weights on the *validation* split of a profile and
                print the values to record in ``notebooks/params/<profile>.yaml``
reconstruct     DART, DRIFT or a baseline on your own data (NIfTI for MRI, .npy/HDF5/zarr for
                4D-STEM; see ``python -m paperlib reconstruct --help``)
train           train the partitioned diffusion prior (``train --modality mri --profile NAME``;
                see ``python -m paperlib train --help``); rerunning after a kill resumes

Every command validates its arguments before it starts any work and reports bad input as one
line ``error: --flag VALUE: ...`` on stderr with exit status 2 (:class:`CommandParser`). A
command never overwrites one of its inputs, and replaces an existing output file only with
``--overwrite`` (:func:`check_output_path`); ``train --out`` is a folder, resumed when it holds
a training state, and refused only when it is an existing file. Outputs are created with the
user's umask (:func:`paperlib.io.output_file_mode`).

The ``train`` command is :func:`train_main` here: it loads the profile's data
(:mod:`paperlib.data.training`) and runs :func:`paperlib.diffusion.train.train_prior` with a
preset of :mod:`paperlib.diffusion.train_config`. Only ``torch`` (and ``tqdm``, ``safetensors``)
is needed to train from a ``--data`` file: the profile machinery (pydantic, yaml) is imported only
where a command uses a profile.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from .io import InputValidationError
from .paths import repo_root

PROG = "python -m paperlib"


class CommandParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line on stderr, exit status 2.

    ``error: --flag: MESSAGE (see `PROG --help`)`` instead of argparse's usage block and
    ``argument --flag:`` prefix.
    """

    def error(self, message: str):
        message = re.sub(r"^argument ([^:]+): ", r"\1: ", message)
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def check_output_path(
    flag: str,
    path: str | os.PathLike | None,
    inputs: Mapping[str, str | os.PathLike | None] = {},
    *,
    overwrite: bool = False,
    folder: bool = False,
) -> None:
    """Refuse an output path that would destroy data; called before a command starts any work.

    Parameters
    ----------
    flag : the option that names the output (``"--out"``), quoted in the message.
    path : the output path (``None``: nothing is written, nothing to check).
    inputs : ``{flag: path}`` of the command's input files (``None`` for options not given).
        An output that is the same file as an existing input (:func:`os.path.samefile`: symbolic
        and hard links included) is refused even with ``overwrite``.
    overwrite : replace an existing output file (``--overwrite``); without it any existing path
        (a dangling symbolic link included) is refused.
    folder : the output is a folder (``train --out``): an existing folder is fine (training
        resumes in it), an existing file or other non-folder is refused.

    Raises
    ------
    InputValidationError : one line ``FLAG PATH: why``.
    """
    if path is None:
        return
    path = Path(path)
    if folder:
        if os.path.lexists(path) and not path.is_dir():
            raise InputValidationError(f"{flag} {path}: expected a folder (new, or one to resume training in), "
                                       "got an existing file")
        return
    if path.is_dir():
        raise InputValidationError(f"{flag} {path}: expected a file path, got an existing folder")
    for name, source in inputs.items():
        if source is not None and path.exists() and os.path.exists(source) and os.path.samefile(path, source):
            raise InputValidationError(f"{flag} {path}: is the input {name} {source}; refusing to overwrite an "
                                       "input (--overwrite does not apply), choose another path")
    if os.path.lexists(path) and not overwrite:
        raise InputValidationError(f"{flag} {path}: the file exists; refusing to overwrite it "
                                   "(pass --overwrite to replace it)")


def _exit_status(exc: SystemExit) -> int:
    """The exit status carried by a :class:`SystemExit` (argparse's ``--help`` and errors)."""
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


# ---------------------------------------------------------------------------- data, tune-baselines
def _data_parser() -> CommandParser:
    p = CommandParser(prog=f"{PROG} data", description=COMMANDS["data"].description)
    p.add_argument("--profile", default="default", help="profile name or YAML path (its mri section)")
    return p


def data_main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib data --profile NAME``; 0 done, 2 bad input (message on stderr)."""
    return _run_command(_data_parser(), _cmd_data, argv)


def _run_command(parser: argparse.ArgumentParser, command: Callable[[argparse.Namespace], int],
                 argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``command``; a ``ValueError``/``FileNotFoundError`` is one line on stderr, status 2."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return command(args)
    except (FileNotFoundError, ValueError) as exc:  # paperlib.config.ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _cmd_data(args) -> int:
    from .config import load_profile
    from .data.brain import load_split

    cfg = load_profile(args.profile)
    for split in ("train", "val", "test"):
        vols = load_split(cfg.mri, split, progress=True)
        print(f"{split}: {len(vols)} volumes of shape {tuple(vols.images.shape[1:])}")
    return 0


def _cmd_tune(args) -> int:
    from .experiments import mri as mri_exp
    from .recon import mri_baselines
    from .config import load_profile, profile_path
    from .tables import write_csv_rows

    check_output_path("--out", args.out, {"--profile": profile_path(args.profile)}, overwrite=args.overwrite)
    cfg = load_profile(args.profile)
    torch.set_num_threads(args.threads or cfg.threads)
    source = f"validation split ({cfg.mri.source})"
    if args.synthetic_proxy:
        # no real data here: tune on synthetic validation volumes of the profile's in-plane size
        depth, n_val = args.synthetic_proxy
        mri = cfg.mri.model_copy(update={"source": "synthetic", "shape": (depth, *cfg.mri.shape[1:]),
                                         "n_val": n_val, "noise_std": 0.01})
        cfg = cfg.model_copy(update={"mri": mri})
        source = f"synthetic proxy of the validation split ({n_val} volumes of {depth}x{mri.shape[1]}x{mri.shape[2]})"
    cases = mri_exp.mri_cases(cfg, split="val", mask_kind=cfg.mri_physics.table1_mask, progress=True)
    ops = [c.operator for c in cases]
    ys = [c.kspace for c in cases]
    targets = [c.image for c in cases]
    head_masks = [c.head_mask for c in cases] if args.criterion == "ssim_head" else None
    b = cfg.mri_baselines
    grid = list(args.grid)
    runs = [("tv", None, mri_baselines.total_variation, {"iters": b.tv_iters})] + [
        ("cs_mri", wavelet, mri_baselines.cs_wavelet, {"iters": b.cs_iters, "levels": b.cs_levels, "wavelet": wavelet})
        for wavelet in args.wavelets
    ]
    results = {}
    for name, wavelet, fn, kwargs in runs:
        best, scores = mri_baselines.tune_weight(fn, ops, ys, targets, grid, head_masks=head_masks, **kwargs)
        results[(name, wavelet)] = (best, scores)
        label = name + (f" ({wavelet})" if wavelet else "")
        print(f"{label}: " + ", ".join(f"{w:g} -> {s:.4f}" for w, s in scores) + f"  => best {best:g}")
    best_cs = max((k for k in results if k[0] == "cs_mri"), key=lambda k: max(s for _, s in results[k][1]))
    print("\nrecord in notebooks/params/%s.yaml, section mri_baselines:" % cfg.name)
    print(f"  cs_weight: {results[best_cs][0]:g}\n  cs_wavelet: {best_cs[1]}\n  tv_weight: {results[('tv', None)][0]:g}")
    print(f"  tuned_on: \"{source}, {len(cases)} volumes, weights {grid}, wavelets "
          f"{list(args.wavelets)}, best mean {'SSIM inside the head' if head_masks else 'whole-image SSIM'}\"")
    if args.out:
        # one row per grid point: the criterion's mean over the validation volumes, in a column
        # named after what it measures (ssim_head: inside the head mask; ssim_whole: whole image)
        column = "ssim_head" if head_masks else "ssim_whole"
        rows = [{"modality": "mri", "split": "val", "n_volumes": len(cases),
                 "method": name + (f"_{wavelet}" if wavelet else ""), "weight": w, f"{column}_mean": s}
                for (name, wavelet), (_, scores) in results.items() for w, s in scores]
        write_csv_rows(rows, args.out)
    return 0


# ---------------------------------------------------------------------------- train
def train_preset(modality: str, profile: str, preset: str | None = None) -> str:
    """The training preset of ``python -m paperlib train``: ``preset``, else one named after the profile.

    Without ``preset`` the profile's name (a YAML path's stem) is used, and a modality-specific
    preset ``<modality>_<profile>`` wins where one exists (``--modality mri --profile default``
    trains ``mri_default``).

    Raises
    ------
    ValueError : no such preset in :data:`~paperlib.diffusion.train_config.TRAIN_PRESETS`.
    """
    from .diffusion.train_config import TRAIN_PRESETS

    name = preset or Path(profile).stem
    specific = _with_modality(modality, name)
    if preset is None and specific in TRAIN_PRESETS:
        name = specific
    if name not in TRAIN_PRESETS:
        raise ValueError(f"--preset: no training preset {name!r}; expected one of {sorted(TRAIN_PRESETS)}")
    return name


def prior_dir(modality: str, preset: str) -> Path:
    """Default folder of the prior trained by ``preset``: ``<repo>/checkpoints/<modality>_<preset>``.

    The modality is not repeated when the preset already starts with it (``stem_default_l2`` ->
    ``checkpoints/stem_default_l2``). The profiles' ``prior.checkpoint`` and
    ``stem_prior.checkpoint`` name the folders written this way (tested).
    """
    return repo_root() / "checkpoints" / _with_modality(modality, preset)


def _with_modality(modality: str, name: str) -> str:
    """``name`` prefixed with ``<modality>_`` unless it already starts with it (or is a 2D slice
    prior, ``slice2d_*``: the second system's priors live in ``checkpoints/slice2d_*``)."""
    return name if name.startswith((f"{modality}_", "slice2d_")) else f"{modality}_{name}"


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository root where it lies inside it (portable manifests), else absolute."""
    path = path.resolve()
    try:
        return path.relative_to(repo_root().resolve()).as_posix()
    except ValueError:
        return str(path)


def _train_parser() -> CommandParser:
    from .diffusion.train_config import TRAIN_PRESETS

    p = CommandParser(prog=f"{PROG} train", description=COMMANDS["train"].description)
    p.add_argument("--modality", choices=("mri", "stem"), required=True)
    p.add_argument("--profile", default="default", help="profile name or YAML path (data section)")
    p.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="training preset (default: the profile's name)")
    p.add_argument("--data", type=Path, help="(N, D, H, W) training volumes, .npy or .pt (default: the profile's)")
    p.add_argument("--data-scale", type=float, default=1.0,
                   help="divide --data by this (recorded in the manifest; not for bundles, which are scaled)")
    p.add_argument("--export-data", type=Path, metavar="FILE.pt",
                   help="write the profile's training data and its provenance to FILE.pt and stop "
                        "(train elsewhere with --data FILE.pt); a new file, or --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --export-data file")
    p.add_argument("--groups", nargs="*", type=int, help="group indices (default: all, or this rank's)")
    p.add_argument("--out", type=Path, help="output folder (default: checkpoints/<modality>_<preset>); "
                                           "an existing folder is resumed, an existing file refused")
    p.add_argument("--init-from", type=Path, metavar="DIR",
                   help="fine-tuning presets: the prior to start from (default: the folder its base preset "
                        "trains, checkpoints/<modality>_<base>)")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--max-steps", type=int, help="stop each group after this many steps in this call (resumable)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a state exists")
    p.add_argument("--no-progress", action="store_true")
    return p


def _train_config(args: argparse.Namespace):
    """The preset's :class:`~paperlib.diffusion.train_config.TrainConfig` with the command line's changes."""
    from .diffusion.train_config import FINE_TUNE_BASES, TRAIN_PRESETS

    preset = train_preset(args.modality, args.profile, args.preset)
    cfg = TRAIN_PRESETS[preset]
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    base = FINE_TUNE_BASES.get(preset)
    if args.init_from is not None or base is not None:
        cfg = replace(cfg, init_from=_repo_relative(args.init_from or prior_dir(args.modality, base)))
    return preset, cfg


def _train_data(args: argparse.Namespace, preset: str | None = None):
    """The training tensor and its ``dataset`` record: ``--data`` (a bundle or an array) or the
    profile's (for ``preset``: :data:`paperlib.data.training.PRESET_DATA`)."""
    from .diffusion.bundles import load_data_file

    if args.data is None:
        from .data.training import load_training_data

        return load_training_data(args.modality, args.profile, preset=preset)
    data, info = load_data_file(args.data, with_info=True)
    if info is None:
        return data / args.data_scale, {"modality": args.modality, "file": args.data.name, "scale": args.data_scale}
    if args.data_scale != 1.0:
        raise ValueError(f"--data-scale {args.data_scale:g}: {args.data} is a bundle, already "
                         f"scaled (scale {info.get('scale', 1.0)}); leave --data-scale out")
    if info.get("modality", args.modality) != args.modality:
        raise ValueError(f"--data {args.data}: a {info['modality']} bundle, but --modality {args.modality}")
    return data, info


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib train --modality {mri,stem} --profile NAME [options]``: train a partitioned prior.

    MRI volumes come from the profile's ``mri`` section (train split), 4D-STEM potentials from its
    ``stem`` section (``stem_eval.n_train`` cubic crystals, divided by ``stem_prior.data_scale``);
    ``--data FILE`` ((N, D, H, W) ``.npy`` or ``.pt``, divided by ``--data-scale``) replaces either
    (:func:`paperlib.data.training.load_training_data`). The preset is :func:`train_preset`; the
    output folder ``--out`` or :func:`prior_dir`; a fine-tuning preset
    (:data:`~paperlib.diffusion.train_config.FINE_TUNE_BASES`) starts from ``--init-from`` or its
    base preset's :func:`prior_dir`. The output folder holds, per group, the resumable state, the
    loss log (JSON lines) and, when the run is complete, the prior (safetensors + manifest);
    rerunning the same command after a kill resumes exactly. Under ``torchrun`` each rank trains
    its own groups. Before any data is loaded, an ``--out`` that is an existing file is refused,
    and so is an ``--export-data`` file that is ``--data`` (always) or exists (unless
    ``--overwrite``): :func:`check_output_path`.

    Returns
    -------
    exit status: 0 done, 2 bad input (message on stderr).
    """
    from .diffusion.bundles import export_data
    from .diffusion.distributed import gather_stats, groups_for_rank, init_from_env, shutdown, track
    from .diffusion.train import train_prior

    args = _train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not (args.data_scale > 0):
        print(f"error: --data-scale: expected > 0, got {args.data_scale}", file=sys.stderr)
        return 2
    try:
        preset, cfg = _train_config(args)
        out = args.out or prior_dir(args.modality, preset)
        check_output_path("--out", out, folder=True)
        check_output_path("--export-data", args.export_data, {"--data": args.data, "--profile": args.profile},
                          overwrite=args.overwrite)
        if args.threads:
            torch.set_num_threads(args.threads)
    except ValueError as exc:  # InputValidationError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ctx = init_from_env()
    try:
        data, info = _train_data(args, preset)
        if args.export_data is not None:
            export_data(args.export_data, data, info)
            print(f"wrote {args.export_data}: {tuple(data.shape)} ({info.get('modality')}, "
                  f"profile {info.get('profile', '-')})")
            return 0
        groups = args.groups or groups_for_rank(cfg.num_groups, ctx.rank, ctx.world_size)
        with track(ctx, groups) as stats:
            results = train_prior(cfg, data, out, groups=groups, resume=not args.no_resume,
                                  progress=not args.no_progress and ctx.is_main, max_steps=args.max_steps,
                                  dataset=info, device=ctx.device)
        for g, res in zip(groups, results):
            print(f"[rank {ctx.rank}] group {g}: step {res.step}/{cfg.steps}, last loss {res.last_loss}, "
                  f"{'prior ' + str(res.prior_path) if res.prior_path else 'state ' + str(res.state_path)}")
        for s in gather_stats(stats) or []:
            print(f"rank {s.rank}: groups {s.groups}, {s.wall_time_s:.1f} s, peak RSS {s.peak_rss_bytes / 2**20:.0f} MiB"
                  + (f", peak CUDA {s.peak_cuda_alloc_bytes / 2**20:.0f} MiB" if s.peak_cuda_alloc_bytes else ""))
    except (ValueError, FileNotFoundError, NotImplementedError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    return 0


def _tune_parser() -> CommandParser:
    p = CommandParser(prog=f"{PROG} tune-baselines", description=COMMANDS["tune-baselines"].description)
    p.add_argument("--profile", default="default", help="profile name or YAML path")
    p.add_argument("--grid", nargs="+", type=float, default=[0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5],
                   help="weights to try (relative to max |zero-filled image|)")
    p.add_argument("--wavelets", nargs="+", default=["haar", "db2", "db4"], help="CS-MRI wavelets to try")
    p.add_argument("--criterion", choices=["ssim_head", "ssim_whole"], default="ssim_head",
                   help="mean SSIM inside the head (default; whole-image SSIM rewards over-smoothing) or whole image")
    p.add_argument("--threads", type=int, help="torch threads (default: the profile's)")
    p.add_argument("--synthetic-proxy", nargs=2, type=int, metavar=("DEPTH", "N"),
                   help="tune on N synthetic validation volumes of DEPTH slices at the profile's "
                        "in-plane size (for profiles whose real data is not available)")
    p.add_argument("--out", type=Path, help="optional CSV with the grid scores (a new file, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return p


def tune_main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib tune-baselines --profile NAME [options]``; 0 done, 2 bad input (message on stderr)."""
    return _run_command(_tune_parser(), _cmd_tune, argv)


def reconstruct_main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib reconstruct ...``: :func:`paperlib.reconstruct.main` (imported when used)."""
    from .reconstruct import main as run

    return run(argv)


# ---------------------------------------------------------------------------- dispatcher
@dataclass(frozen=True)
class Command:
    """A subcommand of ``python -m paperlib``.

    Attributes
    ----------
    description : one line, shown by ``python -m paperlib --help`` and atop the command's own help.
    main : entry point, called with the arguments after the command's name; returns the exit status.
    """

    description: str
    main: Callable[[Sequence[str] | None], int]


#: Every subcommand, by name: what ``python -m paperlib --help`` lists and :func:`main` dispatches.
COMMANDS: dict[str, Command] = {
    "data": Command("generate (or load) and cache the MRI splits of a profile", data_main),
    "tune-baselines": Command("choose the CS-MRI and TV weights on the validation split of a profile",
                              tune_main),
    "train": Command("train a partitioned diffusion prior (rerunning after a kill resumes)", train_main),
    "reconstruct": Command("run DART, DRIFT or a baseline on your own data (NIfTI MRI, 4D-STEM .npy/HDF5/zarr)",
                           reconstruct_main),
}


def _command_list() -> str:
    """One line per command of :data:`COMMANDS`: its name and its description."""
    width = max(map(len, COMMANDS)) + 2
    return "\n".join(f"  {name:<{width}}{command.description}" for name, command in COMMANDS.items())


def _top_parser() -> CommandParser:
    """The parser of ``python -m paperlib --help``: every command of :data:`COMMANDS` with its description."""
    return CommandParser(
        prog=PROG, usage=f"{PROG} COMMAND [options]",
        description="paperlib: physics-guided diffusion priors (DART, DRIFT) for multi-slice MRI and 4D-STEM.",
        epilog=f"commands:\n{_command_list()}\n\n`{PROG} COMMAND --help` shows the options of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib COMMAND [options]``: run the command (:data:`COMMANDS`); its exit status.

    ``--help`` (or ``-h``) alone lists the commands and returns 0; no command or an unknown one
    prints the list on stderr and returns 2.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        _top_parser().print_help()
        return 0
    if not argv or argv[0] not in COMMANDS:
        got = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"error: {got}; expected one of:\n{_command_list()}\n(see `{PROG} --help`)", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]].main(argv[1:])
    except SystemExit as exc:  # argparse: a command's --help, or a usage error (already printed)
        return _exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
