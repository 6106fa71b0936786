"""Figures 4 and 7: per-sample barcodes of right/wrong over epochs, SGD above EMA,
with each sample's image beside its barcode when images are given."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI


def barcode_figure(path, barcodes: Mapping, epochs, samples, images=None, *,
                   title: str | None = None, width="double", dpi: int = DPI, fig=None):
    """barcodes: {network: (k, T) bool} as from dyn.analyze.measures.flips.barcode(); epochs: (T,);
    samples: (k,) sample indices, for the labels; images: optional (k, H, W, C)
    uint8 with C 1 or 3. Returns the path, or with path None the figure (drawn on `fig`,
    a Figure or SubFigure, when given)."""
    epochs = np.asarray(epochs)
    samples = np.asarray(samples).ravel()
    k, t = len(samples), len(epochs)
    nets = style.order(barcodes)
    if not nets:
        raise ValueError("no barcodes to draw")
    codes = {}
    for net in nets:
        b = np.asarray(barcodes[net])
        if b.shape != (k, t):
            raise ValueError(f"barcode of {net} is {b.shape}; expected ({k}, {t}) for "
                             f"{k} samples and {t} epochs")
        codes[net] = b.astype(np.int8)
    if images is not None:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[0] != k \
                or images.shape[3] not in (1, 3):
            raise ValueError(f"images must be uint8 (k={k}, H, W, 1 or 3), got {images.dtype} {images.shape}")
    # cell edges halfway between recorded epochs, so gaps in the recording show as wider cells
    mid = (epochs[1:] + epochs[:-1]) / 2 if t > 1 else np.zeros(0)
    step = (epochs[1] - epochs[0]) if t > 1 else 1
    x = np.concatenate([[epochs[0] - step / 2], mid, [epochs[-1] + step / 2]]) if t else np.zeros(1)
    y = np.arange(len(nets) + 1) - 0.5
    with style.context():
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        cmap = ListedColormap([style.WRONG_COLOR, style.RIGHT_COLOR])
        row_h = 0.14 * len(nets) + 0.12
        height = 0.45 + row_h * k
        fig = style.canvas(fig, width, height)
        grid = fig.add_gridspec(k, 2 if images is not None else 1, hspace=0.35, wspace=0.02,
                                top=1 - 0.25 / height, bottom=0.3 / height,
                                width_ratios=[row_h, 1] if images is not None else None)
        for i in range(k):
            ax = fig.add_subplot(grid[i, -1])
            ax.pcolormesh(x, y, np.stack([codes[n][i] for n in nets]), cmap=cmap, vmin=0, vmax=1,
                          rasterized=True)
            ax.set_ylim(y[-1], y[0])  # first network (SGD) on top
            ax.set_yticks(range(len(nets)), [style.label(n) for n in nets], fontsize=6)
            ax.tick_params(length=0, axis="y")
            ax.grid(False)
            for s in ax.spines.values():
                s.set_visible(False)
            if images is None:
                ax.set_ylabel(f"#{samples[i]}", rotation=0, ha="right", va="center", fontsize=7)
            if i < k - 1:
                ax.tick_params(labelbottom=False)
            else:
                style.epoch_axis(ax)
            if images is not None:
                iax = fig.add_subplot(grid[i, 0])
                img = images[i]
                iax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255,
                           interpolation="nearest")
                iax.set_axis_off()
                iax.text(-0.08, 0.5, f"#{samples[i]}", transform=iax.transAxes, ha="right",
                         va="center", fontsize=7)
        fig.legend(handles=[Patch(color=style.RIGHT_COLOR, label="right"),
                            Patch(color=style.WRONG_COLOR, label="wrong")],
                   loc="upper right", ncols=2, bbox_to_anchor=(1.0, 1.0))
        if title:
            fig.suptitle(title, x=0.02, ha="left")
        return style.finish(fig, path, dpi)
