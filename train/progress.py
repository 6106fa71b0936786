"""Training progress: a bar per epoch on a terminal, one summary line per epoch otherwise.

The bar redraws at most five times a second; reading the loss for it is the only host sync the
training loop does between epoch ends.
"""

from __future__ import annotations

import shutil
import sys
import time

import click


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, epochs: int, iters_per_epoch: int, batch_size: int, *, stream=None,
                 interval: float = 0.2, enabled: bool | None = None):
        self.epochs, self.iters, self.batch = epochs, iters_per_epoch, batch_size
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if enabled is None else enabled
        self.interval = interval
        self._last_draw = 0.0
        self._epoch_times: list[float] = []
        self._t0: float | None = None

    def due(self) -> bool:
        """True when the bar should be redrawn (the caller then reads the loss)."""
        return self.tty and time.perf_counter() - self._last_draw >= self.interval

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self._t0 = epoch, time.perf_counter()

    def update(self, step: int, loss: float) -> None:
        self._last_draw = now = time.perf_counter()
        elapsed = now - self._t0
        rate = step * self.batch / elapsed if elapsed > 0 else 0.0
        eta = elapsed / step * (self.iters - step) if step else 0.0
        width = max(10, min(30, shutil.get_terminal_size((100, 20)).columns - 80))
        done = int(width * step / self.iters)
        bar = "#" * done + "-" * (width - done)
        line = (f"epoch {self.epoch}/{self.epochs} [{bar}] {step}/{self.iters} loss {loss:.4f} "
                f"{rate:,.0f} img/s ETA {_clock(eta)}")
        click.echo("\r" + line + "\033[K", nl=False, file=self.stream)

    def end_epoch(self, epoch: int, row: dict, networks: list[str], splits: list[str]) -> None:
        """One line per epoch: train loss/acc, each network's accuracy, time, ETA of the run.

        The time is this object's own clock since start_epoch, so it counts the recording too
        (the metrics row's `seconds` stops where the recording starts, which on a CPU can be
        as long again as the training).
        """
        seconds = time.perf_counter() - self._t0 if self._t0 is not None else row.get("seconds", 0.0)
        self._epoch_times.append(seconds)
        accs = []
        for s in splits[:1]:  # the first split (val) keeps the line short
            accs.append(f"{s} " + " ".join(f"{n} {row.get(f'{n}/{s}/acc', float('nan')):.4f}" for n in networks))
        recent = self._epoch_times[-5:]
        eta = sum(recent) / len(recent) * (self.epochs - epoch)
        train = ""
        if "train_loss" in row:
            train = f"loss {row['train_loss']:.4f} acc {row.get('train_acc', float('nan')):.4f} | "
        line = (f"epoch {epoch}/{self.epochs} | {train}{' | '.join(accs)} | "
                f"{seconds:.1f} s, ETA {_clock(eta)}")
        click.echo(("\r" + line + "\033[K") if self.tty else line, file=self.stream)

    def message(self, text: str) -> None:
        click.echo(("\r\033[K" if self.tty else "") + text, file=self.stream)


class NullProgress:
    """Says nothing: ranks other than 0 of a torchrun job, which rank 0 speaks for."""

    def due(self) -> bool:
        return False

    def start_epoch(self, epoch: int) -> None:
        pass

    def update(self, step: int, loss: float) -> None:
        pass

    def end_epoch(self, epoch: int, row: dict, networks: list[str], splits: list[str]) -> None:
        pass

    def message(self, text: str) -> None:
        pass
