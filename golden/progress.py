"""Progress bars for long loops (training epochs, evaluation, simulations), drawn by tqdm."""

import os
import sys

from tqdm import tqdm


class Progress:
    """``with Progress(total, "epoch 1") as bar: bar.advance(n, acc=0.9)``.

    On a terminal tqdm redraws one line (rate, ETA and the named figures); elsewhere (CI logs,
    pipes) the same line is printed at every 10 % so logs stay short. ``enabled=False`` is silent.
    """

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True, unit: str = "samples"):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._sink = None if self.interactive else open(os.devnull, "w")
        self.bar = tqdm(total=max(total, 1), desc=label, unit=unit, unit_scale=False, dynamic_ncols=True,
                        file=self.stream if self.interactive else self._sink, disable=not enabled,
                        mininterval=0.2 if self.interactive else float("inf"))
        self._next_report = 0.1
        self.done = 0      # counted here too: a disabled tqdm bar does not count

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled and not self.interactive:
            self._print_line()
        self.bar.close()
        if self._sink is not None:
            self._sink.close()

    def advance(self, n: int, **figures) -> None:
        self.done += n
        if figures:
            self.bar.set_postfix({name: f"{value:.3f}" if isinstance(value, float) else value
                                  for name, value in figures.items()}, refresh=False)
        self.bar.update(n)
        if self.enabled and not self.interactive and self.bar.n / self.bar.total >= self._next_report:
            while self.bar.n / self.bar.total >= self._next_report:
                self._next_report += 0.1
            if self.bar.n < self.bar.total:
                self._print_line()

    def _print_line(self) -> None:
        self.stream.write(str(self.bar) + "\n")
        self.stream.flush()
