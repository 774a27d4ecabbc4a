"""Diagnostic (not part of the library): does the STEM prior's vacuum second group come from its
L1 training loss?

Fine-tunes group 2 (slices 4-7) of ``checkpoints/stem_default`` from its shipped weights for
STEPS steps with the L2 or L1 loss on the exported training bundle (``python -m paperlib train
--modality stem --profile default --export-data .devdata/stem_default_train.pt``), then draws 16
unconditional samples (DDIM, 20 steps, the profile's clip) and prints, per slice, the fraction
whose mean exceeds 5 V·Å. Nothing is written. Usage::

    python scripts/prior_occupancy_check.py STEPS {l2,l1}

Recorded (2026-11-26, 2 CPU threads, ~1.2 s/step): shipped weights [0.94 1.0 0.94 0.81 0.06 0.06
0.0 0.0]; 400 L2 steps [0.94 1.0 0.94 0.81 0.56 0.88 0.25 0.5]; 400 L1 steps (control)
[0.94 1.0 0.94 0.81 0.0 0.0 0.0 0.06]; training data [0.98 0.96 0.99 1.0
0.82 0.60 0.38 0.17] (fraction of the 96 crystals with slice mean > 1 V·Å).

Outcome: the default profile's prior is now ``checkpoints/stem_default_l2``, both groups
fine-tuned with the L2 loss through ``make train`` (preset ``stem_default_l2``).
"""
import sys
import time

import torch

from paperlib.diffusion.checkpoints import load_partitioned_prior
from paperlib.diffusion.train import _target, q_sample


def main(steps: int, loss_name: str) -> None:
    torch.set_num_threads(2)
    bundle = torch.load(".devdata/stem_default_train.pt", weights_only=False)  # the exported bundle
    data = bundle["data"]  # (N, 8, 64, 64), already divided by the data scale
    prior = load_partitioned_prior("checkpoints/stem_default", method="ddim", eta=0.0, clip=(0.0, 10.0))
    model = prior.models[1].float()
    model.train()
    abar = prior.sampler.abar.float()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    gen = torch.Generator().manual_seed(1)
    start = time.time()
    for k in range(steps):
        x0 = data[torch.randint(len(data), (8,), generator=gen), 4:8].float()
        flip = torch.rand(8, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        t = torch.randint(1000, (8,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        out = model(q_sample(x0, t, noise, abar)[:, None], t)[:, 0]
        err = out - _target("v", x0, noise, abar[t])
        loss = (err ** 2).mean() if loss_name == "l2" else err.abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if k % 50 == 0:
            print(f"step {k}: loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    model.eval()
    x = prior.sample((16, 8, 64, 64), num_steps=20, generator=torch.Generator().manual_seed(0)) * 250.0
    occupied = (x.clamp(min=0).mean((2, 3)) > 5).float().mean(0)
    print(f"{loss_name}, {steps} steps: fraction of samples with slice mean > 5 V·Å",
          [round(float(v), 2) for v in occupied])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("l1", "l2") or not sys.argv[1].isdigit():
        sys.exit("usage: python scripts/prior_occupancy_check.py STEPS {l2,l1}")
    main(int(sys.argv[1]), sys.argv[2])
