"""A dependency-free progress bar for long work (written to stderr)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress over ``total`` units (training steps), with rate and time left.

    ``Progress(total, unit_label="steps", rate_label="configs/s")``; call
    :meth:`update` with the units done and the configurations finished. Disabled
    (silent) when ``enabled`` is False or the stream is not a terminal and
    ``force`` is not set; then only :meth:`close` prints one summary line.
    """

    def __init__(self, total: int, *, desc: str = "sweep", enabled: bool = True, stream=None, width: int = 28):
        self.total = max(int(total), 1)
        self.desc = desc
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.configs = 0
        self.start = time.perf_counter()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._shown = -1

    def update(self, units: int, configs: int = 0, note: str = "") -> None:
        self.done += units
        self.configs += configs
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self._tty and now - self._last < 5 and self.done < self.total:
            return  # a log file gets a line every few seconds, not a torrent
        self._last = now
        self._shown = self.done
        self.stream.write(("\r" if self._tty else "") + self._line(note) + ("" if self._tty else "\n"))
        self.stream.flush()

    def _line(self, note: str = "") -> str:
        elapsed = time.perf_counter() - self.start
        frac = min(self.done / self.total, 1.0)
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        rate = self.configs / elapsed if elapsed > 0 else 0.0
        left = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        eta = _clock(left) if left == left else "?"
        return (f"{self.desc} [{bar}] {frac:6.1%} {self.done}/{self.total} steps "
                f"{rate:.1f} configs/s elapsed {_clock(elapsed)} left {eta} {note}").rstrip()

    def close(self) -> None:
        if self._tty and self._shown == self.done:
            self.stream.write("\n")
        elif self.enabled and self._shown != self.done:
            self.stream.write(("\r" if self._tty else "") + self._line() + "\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"
