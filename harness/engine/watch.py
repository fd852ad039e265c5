"""What someone watching a run sees while it trains: ``log.csv`` growing row by row, TensorBoard
event files, and progress lines with the ETA, images/s and the last val mIoU.

The loop hands every iteration's row to :meth:`RunMonitor.step` and every evaluation to
:meth:`RunMonitor.evaluated`; only the main process writes. ``log.csv`` is appended as the run
goes (each row once the iteration's evaluation, if any, is known) and rewritten whole, atomically,
at every checkpoint and at the end (from the rows the checkpoint holds), so a resumed run's log
never keeps rows of iterations it redoes. TensorBoard events go to the run folder itself
(``tensorboard --logdir runs`` lists every run by its folder); a resumed run purges the events of
the iterations it redoes.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from harness.io import atomic_write_text

log = logging.getLogger(__name__)

VAL_MIOU = "val_miou"  # log.csv column: the val mIoU on the rows of evaluated iterations


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``rows`` as CSV text; the columns are every key in first-seen order, ``val_miou`` last."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns and k != VAL_MIOU)
    columns.append(VAL_MIOU)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def duration(seconds: float) -> str:
    """``3725`` -> ``1h02m``, ``130`` -> ``2m10s``, ``7.4`` -> ``7s``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _summary_writer(out_dir: Path, purge_step: int | None):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # a declared dependency; a broken install must not stop a long run
        log.warning("tensorboard is not installed: no event files for %s (pip install tensorboard)", out_dir)
        return None
    return SummaryWriter(log_dir=str(out_dir), purge_step=purge_step, flush_secs=30)


class RunMonitor:
    """log.csv, TensorBoard and progress lines of one run (a no-op on non-main processes)."""

    def __init__(self, out_dir: Path, *, iterations: int, batch_size: int, rows: list[dict[str, Any]],
                 log_every: int, active: bool, progress_level: int = logging.INFO) -> None:
        self.out_dir, self.iterations, self.batch_size = out_dir, iterations, batch_size
        self.rows, self.log_every, self.active = rows, max(log_every, 1), active
        self.level = progress_level
        self.start_iteration = rows[-1]["iteration"] if rows else 0
        evaluated = [(r["iteration"], r[VAL_MIOU]) for r in rows if r.get(VAL_MIOU) is not None]
        self.last_eval = evaluated[-1] if evaluated else None
        self._pending: dict[str, Any] | None = None
        self._train_seconds = 0.0
        self._file = self._writer = self._tb = None
        if active:
            self._open()

    def _open(self) -> None:
        # the resumed part starts from the checkpoint's rows: rows of redone iterations are dropped
        self.write_all()
        self._file = (self.out_dir / "log.csv").open("a", newline="")
        self._tb = _summary_writer(self.out_dir, self.start_iteration + 1 if self.start_iteration else None)

    # ------------------------------------------------------------------ per iteration
    def step(self, row: dict[str, Any], step_seconds: float) -> None:
        """One finished iteration (already appended to ``rows`` by the loop)."""
        self._train_seconds += step_seconds
        if not self.active:
            return
        self._write_pending()
        self._pending = row
        if self._tb is not None:
            for key, value in row.items():
                if key.startswith("loss_") or key == "lr":
                    self._tb.add_scalar(f"train/{key}", value, row["iteration"])
        iteration = row["iteration"]
        if iteration % self.log_every == 0 or iteration in (self.start_iteration + 1, self.iterations):
            self._progress_line(row)

    def evaluated(self, iteration: int, miou: float) -> None:
        """The val mIoU of ``iteration`` (the last row's): into its row, TensorBoard, the log lines."""
        self.last_eval = (iteration, miou)
        if self.rows and self.rows[-1]["iteration"] == iteration:
            self.rows[-1][VAL_MIOU] = miou
        if self.active and self._tb is not None:
            self._tb.add_scalar("val/miou", miou, iteration)

    def _progress_line(self, row: dict[str, Any]) -> None:
        iteration = row["iteration"]
        done = iteration - self.start_iteration
        per_iteration = self._train_seconds / done if done else 0.0
        images_per_s = self.batch_size / per_iteration if per_iteration else 0.0
        terms = " ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("loss_"))
        val = f"val mIoU {self.last_eval[1]:.2f} at {self.last_eval[0]}" if self.last_eval else "val mIoU -"
        log.log(self.level, "iteration %d/%d (%d%%) %s | lr %.3e | %.1f img/s | ETA %s | %s", iteration,
                self.iterations, 100 * iteration // self.iterations, terms, row["lr"], images_per_s,
                duration(per_iteration * (self.iterations - iteration)), val)
        if self._tb is not None:
            self._tb.add_scalar("train/images_per_s", images_per_s, iteration)

    # ------------------------------------------------------------------ files
    def _write_pending(self) -> None:
        if self._pending is None or self._file is None:
            return
        if self._writer is None:
            columns = [k for k in self._pending if k != VAL_MIOU] + [VAL_MIOU]
            self._writer = csv.DictWriter(self._file, fieldnames=columns, lineterminator="\n",
                                          extrasaction="ignore")
            if self._file.tell() == 0:
                self._writer.writeheader()
        self._writer.writerow(self._pending)
        self._file.flush()
        self._pending = None

    def write_all(self) -> None:
        """log.csv rewritten from every row so far, atomically (checkpoints and the end)."""
        if not self.active:
            return
        self._pending = None
        atomic_write_text(self.out_dir / "log.csv", csv_text(self.rows) if self.rows else "")
        if self._file is not None:  # keep appending to the new file
            self._file.close()
            self._file = (self.out_dir / "log.csv").open("a", newline="")
            self._writer = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

