"""Progress bars: a line per 10 % in logs and pipes, silence when disabled."""

import io

from mfsnn.golden.progress import Progress


def test_pipe_gets_one_line_per_tenth_with_figures():
    stream = io.StringIO()
    with Progress(1000, "epoch 1/1", stream=stream) as bar:
        for k in range(100):
            bar.advance(10, train_acc=k / 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("epoch 1/1") and "1000/1000" in lines[-1] and "train_acc=0.990" in lines[-1]


def test_disabled_bar_writes_nothing():
    stream = io.StringIO()
    with Progress(10, "quiet", stream=stream, enabled=False) as bar:
        bar.advance(10)
    assert stream.getvalue() == "" and bar.done == 10
