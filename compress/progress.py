"""Progress of a long training epoch, by time: where the epoch and the run stand, and how fast they go.

On a terminal a tqdm bar is redrawn about every ``BAR_REFRESH_S``; on a pipe (a CI log) a plain line is
written about every ``LINE_EVERY_S``, so a long CPU epoch shows it is alive wherever its output goes.
"""

from __future__ import annotations

import sys
import time
from typing import Callable

import torch

BAR_REFRESH_S = 2.0  # a terminal's progress bar is redrawn about this often
LINE_EVERY_S = 30.0  # on a pipe (a CI log) a plain progress line about this often


def duration(seconds: float) -> str:
    """``45s``, ``1m20s``, ``14m``, ``2h05m``: precise where it is short, rounded where it is long."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 3600:
        return f"{round(seconds / 60)}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressBar:
    """Where the epoch and the run stand, refreshed by time: a tqdm bar about every 2 s on a terminal, a plain
    line about every 30 s on a pipe (CI), nothing when disabled (``-q``). Between refreshes only the clock is
    read; a refresh reads the running sums once (one host sync on a GPU). The ETAs extrapolate the steps so far."""

    def __init__(self, steps: int, epoch: int, epochs: int, enabled: bool, images_per_step: float,
                 log: Callable[[str], None], *, first_step: int = 0, terminal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.steps, self.epoch, self.epochs, self.images_per_step = steps, epoch, epochs, images_per_step
        self.enabled, self.log, self.clock, self.first = enabled, log, clock, first_step
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.every = BAR_REFRESH_S if terminal else LINE_EVERY_S
        self.started = clock()
        self.due = self.started + self.every
        self.shown = first_step
        self.bar = None
        if enabled and terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, initial=first_step, desc=f"epoch {epoch}/{epochs}", leave=False,
                            dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, sums: torch.Tensor) -> None:
        """``step`` batches of the epoch done, with the running (loss sum, images, correct, labelled) totals."""
        if not self.enabled:
            return
        now = self.clock()
        if now < self.due:
            return
        self.due = now + self.every
        loss_sum, count, correct, labeled = sums.tolist()
        per_step = (now - self.started) / max(step - self.first, 1)
        epoch_eta = (self.steps - step) * per_step
        run_eta = epoch_eta + (self.epochs - self.epoch) * self.steps * per_step
        rate = self.images_per_step / per_step if per_step > 0 else 0.0
        loss, acc = loss_sum / max(count, 1), 100 * correct / max(labeled, 1)
        if self.bar is not None:
            self.bar.update(step - self.shown)
            self.shown = step
            self.bar.set_postfix({"loss": f"{loss:.3f}", "acc": f"{acc:.1f}", "img_s": f"{rate:.0f}",
                                  "run_eta": duration(run_eta)})
            return
        self.log(f"epoch {self.epoch}/{self.epochs} step {step}/{self.steps} ({100 * step / self.steps:.0f}%) "
                 f"{rate:.0f} img/s, loss {loss:.3f}, epoch ETA {duration(epoch_eta)}, run ETA {duration(run_eta)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
