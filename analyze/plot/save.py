"""Save a figure atomically, in the format its file name asks for.

The figure is written to a temporary file beside the destination and renamed over
it (dyn.safeio.staged), so a reader never sees a partial file and a failure leaves
nothing behind (nor clobbers an older figure). `target` is the one rule for what a
figure's file name may be; `dyn analyze` checks --out with it before any work.
"""

import os
from pathlib import Path

from dyn import safeio

FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
DPI = 200
# No creation dates: the same figure gives the same bytes.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
            "svg": {"Date": None}}


def target(path) -> tuple[Path, str]:
    """(path, format): .png is added when the name has no suffix; other suffixes refused."""
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".png")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot save {path.name}: use one of {', '.join(FORMATS)}")
    return path, fmt


def save(fig, path, dpi: int = DPI) -> Path:
    """Write `fig` to `path` (.png at `dpi`, .pdf, .svg); returns the path written."""
    import matplotlib

    from dyn.analyze.plot.style import RC

    path, fmt = target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The style's save-time settings (tight box, fonts as text) apply also to a figure drawn by
    # the Python API and saved here after its drawing function returned.
    with safeio.staged(path, what="saving the figure") as (_, fd), os.fdopen(os.dup(fd), "wb") as f, \
            matplotlib.rc_context({**RC, "svg.hashsalt": "dyn"}):
        fig.savefig(f, format=fmt, dpi=dpi, metadata=METADATA[fmt])
    return path
