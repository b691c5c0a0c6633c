"""A dependency-free progress display for long work (written to stderr).

Sweeps call one compiled program per chunk, which cannot report from inside without a host
callback (and a program with a host callback cannot be kept in the persistent compilation
cache). So the bar moves on two clocks: the work actually finished (whole chunks), and, while a
chunk runs, an estimate from the rate measured so far (``~`` marks the estimated part; it never
passes the chunk's end). Notes say what happens between chunks (``compiling group 2/3``).
"""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    """Progress over ``total`` units (training steps), with rate and time left.

    ``update(units, runs)`` records finished work; ``expect(units, runs)`` announces the
    work now running (the bar then creeps through it at the measured rate); ``note(text)``
    shows what is happening. Disabled (silent) when ``enabled`` is False. On a terminal the
    line is redrawn in place (every half second while a chunk runs); in a log file a line is
    written every few seconds at most.
    """

    def __init__(self, total: int | None, *, desc: str = "sweep", enabled: bool = True, stream=None, width: int = 28,
                 unit: str = "steps", rate_label: str = "runs/s"):
        self.desc = desc
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.reset(total, unit=unit, rate_label=rate_label)

    def reset(self, total: int | None, *, unit: str = "steps", rate_label: str = "runs/s") -> None:
        """Start over with ``total`` units (None: not known yet; only notes are shown)."""
        self.known = total is not None
        self.total = max(int(total or 0), 1)
        self.unit = unit
        self.rate_label = rate_label
        self.done = 0
        self.configs = 0
        self.start = time.perf_counter()
        self._work_time = 0.0  # seconds spent on measured work (for the rate)
        self._work_units = 0
        self._pending = (0, 0, 0.0)  # units, runs, start time of the work running now
        self._note = ""
        self._last = 0.0
        self._shown = -1

    # ---- events

    def note(self, text: str) -> None:
        self._note = text
        self._draw(force=True)

    def expect(self, units: int, runs: int = 0) -> None:
        with self._lock:
            self._pending = (int(units), int(runs), time.perf_counter())
        if self.enabled and self._tty and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="hsens-progress", daemon=True)
            self._ticker.start()

    def update(self, units: int, configs: int = 0, note: str = "") -> None:
        with self._lock:
            units_p, _, started = self._pending
            if units_p and started:
                self._work_time += time.perf_counter() - started
                self._work_units += units
            self._pending = (0, 0, 0.0)
            self.done += units
            self.configs += configs
        if note:
            self._note = note
        self._draw()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
            self._ticker = None
        if not self.enabled:
            return
        self._note = ""
        line = self._line()
        self.stream.write(("\r" if self._tty else "") + line + ("\033[K" if self._tty else "") + "\n")
        self.stream.flush()

    # ---- drawing

    def _estimate(self) -> int:
        units, _, started = self._pending
        if not units or not started or self._work_units == 0:
            return 0
        rate = self._work_units / max(self._work_time, 1e-9)
        return int(min(units * 0.99, rate * (time.perf_counter() - started)))

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw(force=True)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not self._tty and not force and now - self._last < 5 and self.done < self.total:
            return  # a log file gets a line every few seconds, not a torrent
        if not self._tty and force and now - self._last < 5 and not self._note:
            return
        self._last = now
        self._shown = self.done
        with self._lock:
            line = self._line()
        self.stream.write(("\r" if self._tty else "") + line + ("\033[K" if self._tty else "\n"))
        self.stream.flush()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start
        if not self.known:
            return f"{self.desc} [{self._note or '...'}] elapsed {_clock(elapsed)}"
        est = self._estimate()
        shown = min(self.done + est, self.total)
        frac = shown / self.total
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        rate = self.configs / elapsed if elapsed > 0 else 0.0
        left = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        eta = _clock(left) if left == left else "?"
        tilde = "~" if est else ""
        note = f" [{self._note}]" if self._note else ""
        pct = tilde + format(frac, ".1%")
        return (f"{self.desc} [{bar}] {pct:>7} {self.done}/{self.total} {self.unit} "
                f"{rate:.1f} {self.rate_label} elapsed {_clock(elapsed)} left {eta}{note}").rstrip()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"
