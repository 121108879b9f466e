"""A dependency-free progress bar for long loops (training epochs, evaluation, simulations)."""

import sys
import time


class Progress:
    """``with Progress(total, "epoch 1") as bar: bar.advance(n, acc=0.9)``.

    On a terminal it redraws one line (rate, ETA and any named figures); elsewhere (CI logs, pipes)
    it prints a line at every 10 % so logs stay short.
    """

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True, unit: str = "samples"):
        self.total, self.label, self.unit = max(total, 1), label, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.start, self.figures, self._next_report = 0, time.perf_counter(), {}, 0.1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._draw(final=True)

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int, **figures) -> None:
        self.done += n
        self.figures.update(figures)
        if not self.enabled:
            return
        if self.interactive:
            self._draw()
        elif self.done / self.total >= self._next_report:
            self._next_report += 0.1
            if self.done < self.total:
                self._draw(newline=True)

    def _draw(self, final: bool = False, newline: bool = False) -> None:
        fraction = min(self.done / self.total, 1.0)
        bar = "#" * int(fraction * 24)
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        extra = "  ".join(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
                          for name, value in self.figures.items())
        line = (f"{self.label} [{bar:<24}] {self.done}/{self.total} {self.unit}  {rate:,.0f}/s"
                f"{'' if final else f'  eta {eta:.0f}s'}  {extra}")
        if self.interactive:
            self.stream.write("\r" + line.ljust(110) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
