import hashlib

import matplotlib.pyplot as plt
import numpy as np

from paperlib.plotting import image_panel, save_figure, use_paper_style


def _figure():
    use_paper_style()
    fig, axes = plt.subplots(1, 2)
    image_panel(axes[0], np.linspace(0, 1, 64).reshape(8, 8), title="a", note="SSIM 0.9")
    axes[1].plot([0, 1, 2], [1, 0, 1])
    return fig


def test_figures_are_byte_stable(tmp_path):
    digests = []
    for run in range(2):
        fig = _figure()
        paths = save_figure(fig, "f", tmp_path / str(run))
        plt.close(fig)
        digests.append([hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
    assert digests[0] == digests[1]
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
