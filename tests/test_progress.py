"""dyn.train.progress: a bar on a terminal (iterations, loss, images/s, ETA), one line per epoch
otherwise; epoch times and the ETA count the recording, not only the training."""

import io

import pytest

import dyn.train.progress as progress
from dyn.train.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", c)
    return c


class Terminal(io.StringIO):
    def isatty(self):  # click.echo keeps ANSI codes only on a terminal
        return True


ROW = {"train_loss": 0.5, "train_acc": 0.75, "sgd/val/acc": 0.5, "ema-0.9/val/acc": 0.625, "seconds": 1.0}


def test_without_a_terminal_one_line_per_epoch_with_the_whole_epoch_time_and_eta(clock):
    out = io.StringIO()
    p = Progress(epochs=10, iters_per_epoch=4, batch_size=32, stream=out, enabled=False)
    assert not p.due()  # no bar: the loop never syncs for it
    p.start_epoch(1)
    clock.now += 3.0  # 1 s training (ROW["seconds"]) + 2 s recording
    p.end_epoch(1, ROW, ["sgd", "ema-0.9"], ["val", "test"])
    p.start_epoch(2)
    clock.now += 5.0
    p.end_epoch(2, ROW, ["sgd", "ema-0.9"], ["val", "test"])
    lines = out.getvalue().splitlines()
    assert lines[0] == ("epoch 1/10 | loss 0.5000 acc 0.7500 | val sgd 0.5000 ema-0.9 0.6250 | "
                        "3.0 s, ETA 0:27")  # 9 epochs left x 3 s
    assert lines[1].endswith("| 5.0 s, ETA 0:32")  # 8 left x mean(3, 5) s
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()


def test_on_a_terminal_a_bar_with_iterations_loss_speed_and_eta(clock):
    out = Terminal()
    p = Progress(epochs=2, iters_per_epoch=4, batch_size=32, stream=out, interval=0.2)
    assert p.tty
    p.start_epoch(1)
    clock.now += 0.5
    assert p.due()
    p.update(1, 2.25)  # 32 images in 0.5 s; 3 steps left at 0.5 s each
    assert not p.due()  # redrawn at most every `interval`
    text = out.getvalue()
    assert text.startswith("\repoch 1/2 [") and text.endswith("\033[K")
    assert "] 1/4 loss 2.2500 64 img/s ETA 0:01" in text
    bar = text[text.index("[") + 1:text.index("]")]
    assert bar.count("#") == len(bar) // 4 and set(bar) == {"#", "-"}
    clock.now += 1.5
    p.end_epoch(1, ROW, ["sgd"], ["val"])
    assert out.getvalue().endswith("| 2.0 s, ETA 0:02\033[K\n")  # the summary line replaces the bar
