"""Save a figure atomically, in the format its file name asks for.

The figure is written to a temporary file in the destination directory and
moved over the destination with os.replace, so a reader never sees a partial
file and a failure leaves nothing behind (nor clobbers an older figure).
"""

import os
import secrets
from pathlib import Path

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
    # Not mkstemp: its 0600 mode would outlive the rename; open(..., "x") honours the umask.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # the style's save-time settings (tight box, fonts as text) also for a figure drawn by
        # the Python API and saved here after its drawing function returned
        with open(tmp, "xb") as f, matplotlib.rc_context({**RC, "svg.hashsalt": "dyn"}):
            fig.savefig(f, format=fmt, dpi=dpi, metadata=METADATA[fmt])
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
