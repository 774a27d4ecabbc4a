"""Is the real-scan prior short of capacity? The shipped network deepened without changing what it
computes, then fine-tuned beside an unchanged copy on the same data with the same recipe.

``benchmarks/results/real_mri_prior_fit.md`` found the prior underfit: it leads TV by as much on
slabs it never saw as on its training slabs. Whether more capacity helps is a GPU question in the
end (``scripts/train_real_mri_prior_gpu.sh``), but one form of it fits a CPU: :func:`deepen` turns
the network into one with ``num_res_blocks + 1`` residual blocks per level whose new blocks start
as the identity (their last convolution and their attention's output projection zero; an up
block's 1x1 skip passes the upsampled path and drops its new skip input), so the deepened network
computes exactly what the shipped one does (checked by ``tests/test_real_mri_benchmarks.py``).
Both are then trained the same steps with the shipped fine-tune's recipe (preset
``mri_general_lownoise``, same seed, same slabs), so any difference is the capacity. Compare them
with ``benchmarks/real_mri_prior_fit.py`` and ``benchmarks/real_mri_prior_choice.py`` (tuning
scans only). Commands (not shipped; folders deleted after the comparison, sha256 in the CSVs)::

    python benchmarks/real_mri_prior_depth.py   # writes the init, checkpoints/mri_general_deep_init
    python -m paperlib train --modality mri --preset mri_general_deep --steps 400 \\
        --init-from checkpoints/mri_general_deep_init --out checkpoints/mri_general_deep_400
    python -m paperlib train --modality mri --preset mri_general_lownoise --steps 400 \\
        --init-from checkpoints/mri_general_lownoise --out checkpoints/mri_general_lownoise_400
    C="checkpoints/mri_general_lownoise checkpoints/mri_general_lownoise_400 checkpoints/mri_general_deep_400"
    python benchmarks/real_mri_prior_fit.py --threads 1 --checkpoints $C \\
        --baseline checkpoints/mri_general_lownoise_400 --out benchmarks/results/real_mri_prior_depth_fit.csv
    python benchmarks/real_mri_prior_choice.py --threads 1 --checkpoints $C \\
        --out benchmarks/results/real_mri_prior_depth.csv

(the two trainings ran side by side with ``--threads 1``, as did the two comparisons; results in
``benchmarks/results/real_mri_prior_depth{,_fit}.md``).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from paperlib.diffusion.checkpoints import load_prior, save_prior
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.unet3d import AttentionBlock, UNet3D

SOURCE = "checkpoints/mri_general_lownoise"
OUT = "checkpoints/mri_general_deep_init"


def _zero_out(block: nn.Module) -> None:
    """Make a new ResBlock / AttentionBlock of :class:`UNet3D` add nothing to its input path."""
    if isinstance(block, AttentionBlock):
        for part in (block.spatial, block.temporal):
            if part is not None:
                nn.init.zeros_(part.out.weight)
                nn.init.zeros_(part.out.bias)
    elif not isinstance(block, nn.Identity):
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)


def deepen(model: UNet3D) -> UNet3D:
    """``model`` with one more residual block per level (down and up) that computes the same function.

    Down level: the old block, then a new identity block (its skip is the old block's output again).
    Up level: the old first block (it pops the new skip, equal to the one it popped before), a new
    block that passes its input path through (its 1x1 skip conv selects the path, drops the skip
    tensor it pops, the old block's output), then the old remaining blocks (they pop what they did).
    """
    cfg = model.cfg
    deep = UNet3D(replace(cfg, num_res_blocks=cfg.num_res_blocks + 1))
    deep.load_state_dict({k: v for k, v in model.state_dict().items()
                          if not k.startswith(("down.", "up."))}, strict=False)
    n = cfg.num_res_blocks
    for old, new in zip(model.down, deep.down):
        for j in range(n):
            new.blocks[j].load_state_dict(old.blocks[j].state_dict())
            new.attns[j].load_state_dict(old.attns[j].state_dict())
        _zero_out(new.blocks[n])
        _zero_out(new.attns[n])
        new.resample.load_state_dict(old.resample.state_dict())
    for old, new in zip(model.up, deep.up):
        # old up blocks 0..n; new 0..n+1: new 0 <- old 0, new 1 = pass-through, new j+1 <- old j
        new.blocks[0].load_state_dict(old.blocks[0].state_dict())
        new.attns[0].load_state_dict(old.attns[0].state_dict())
        for j in range(1, n + 1):
            new.blocks[j + 1].load_state_dict(old.blocks[j].state_dict())
            new.attns[j + 1].load_state_dict(old.attns[j].state_dict())
        mid = new.blocks[1]
        _zero_out(mid)
        _zero_out(new.attns[1])
        out_ch, in_ch = mid.skip.weight.shape[:2]
        with torch.no_grad():  # the input is cat([path (out_ch channels), skip]): keep the path
            mid.skip.weight.zero_()
            mid.skip.bias.zero_()
            mid.skip.weight[:, :out_ch, 0, 0] = torch.eye(out_ch)
        new.resample.load_state_dict(old.resample.state_dict())
    return deep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default=SOURCE, help="the prior folder to deepen (one group)")
    p.add_argument("--out", type=Path, default=Path(OUT),
                   help=f"a new prior folder for the deepened network (default {OUT}, where preset "
                        "mri_general_deep starts from without --init-from)")
    args = p.parse_args(argv)
    if args.out.exists():
        p.error(f"--out {args.out}: exists; choose a new folder")
    models, manifests = load_prior(args.source)
    if len(models) != 1:
        p.error(f"--source {args.source}: expected a one-group prior, got {len(models)} groups")
    m = manifests[0]
    deep = deepen(models[0].float())
    save_prior(args.out / "prior_group0.safetensors", deep, group_size=m["group_size"],
               schedule=ScheduleConfig(**m["schedule"]), prediction=m["prediction"], dataset=m.get("dataset"),
               steps=0, dtype=torch.float32,
               extra={"deepened_from": {"path": args.source, "sha256": m["sha256"], "steps": m.get("steps")}})
    print(f"wrote {args.out}: {sum(p.numel() for p in deep.parameters())} parameters "
          f"(from {sum(p.numel() for p in models[0].parameters())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
