"""Paper style and byte-stable figure output.

``save_figure`` writes PNG and PDF with fixed metadata (no dates, no version strings), each
atomically, so re-running a notebook with the same numbers gives the same files.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import os
from importlib.resources import files
from pathlib import Path

import matplotlib

# Headless Agg unless a backend was chosen: a Jupyter kernel sets MPLBACKEND to its inline backend
# (figures shown in JupyterLab), the Makefile exports Agg for `make figures`.
if "MPLBACKEND" not in os.environ:
    matplotlib.use("Agg", force=False)
import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from .config import Profile

STYLE = files("paperlib") / "styles" / "paper.mplstyle"
_METADATA = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}


def use_paper_style() -> None:
    """Apply the paper style (fonts, sizes, gray images) to matplotlib's global rcParams."""
    mpl.style.use(str(STYLE))
    mpl.rcParams["svg.hashsalt"] = "paperlib"


def notebook_setup(profile: str, out_dir: str | os.PathLike, *, style: bool = True) -> tuple["Profile", Path]:
    """The first lines of every notebook: load and validate the profile (a name or YAML path),
    set torch's threads to the profile's, apply the paper style (``style``) and create ``out_dir``.

    Returns ``(profile, out_dir as a Path)``.
    """
    import torch

    from .config import load_profile

    cfg = load_profile(profile)
    torch.set_num_threads(cfg.threads)
    if style:
        use_paper_style()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return cfg, out


def save_figure(
    fig: "plt.Figure", stem: str, out_dir: str | os.PathLike, formats: tuple[str, ...] = ("png", "pdf")
) -> list[Path]:
    """Save ``fig`` as ``out_dir/stem.<fmt>`` for every format, atomically, with fixed metadata.

    >>> import tempfile
    >>> fig, ax = plt.subplots(); _ = ax.plot([0, 1])
    >>> [p.name for p in save_figure(fig, "demo", tempfile.mkdtemp(), formats=("png",))]
    ['demo.png']
    >>> plt.close(fig)
    """
    out = Path(out_dir)
    written = []
    for fmt in formats:
        if fmt not in _METADATA:
            raise ValueError(f"formats: expected any of {sorted(_METADATA)}, got {fmt!r}")
        path = out / f"{stem}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, metadata=_METADATA[fmt])
        written.append(path)
    return written


def image_panel(ax, image, *, title: str | None = None, vmin=0.0, vmax=1.0, note: str | None = None):
    """Show one 2D image without axes; ``note`` is printed in the lower left corner."""
    ax.imshow(image, vmin=vmin, vmax=vmax, cmap="gray")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    if note:
        ax.text(0.02, 0.03, note, transform=ax.transAxes, color="yellow", fontsize=6, va="bottom")
    return ax
