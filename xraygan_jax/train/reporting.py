"""What a long run tells its user: JSON-lines metrics and progress lines with rate and ETA.

Progress lines go to standard error (process 0 only), so they show even when the launchers hide
the libraries' INFO logs.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax


class MetricsWriter:
    """Appends one JSON object per line to a file (e.g. `workdir/metrics.jsonl`).

    Appending keeps the history of a resumed run; readers that need one value per step keep the
    last record of each step (see `read_metrics`). The file is the run's, not a process's: only
    process 0 opens and writes it; on the other processes of a multi-process run every method
    does nothing.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = pathlib.Path(path)
        self._file = None
        if jax.process_index() == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - see close()

    def write(self, record: Mapping[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def read_metrics(path: str | os.PathLike, **match: Any) -> list[dict[str, Any]]:
    """Reads a metrics file; keeps records whose fields equal `match`, the last one per step.

    A run resumed from a checkpoint repeats the steps after that checkpoint; the repeated steps
    supersede the first attempt.
    """
    by_step: dict[Any, dict[str, Any]] = {}
    unstepped = []
    for record in _iter_records(path):
        if any(record.get(k) != v for k, v in match.items()):
            continue
        if "step" in record:
            by_step[record["step"]] = record
        else:
            unstepped.append(record)
    return unstepped + [by_step[s] for s in sorted(by_step)]


def _iter_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if line:
                yield json.loads(line)


def _plain(value: Any) -> Any:
    """NumPy and JAX scalars to Python numbers, for JSON."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


class Progress:
    """Prints `done/total`, items per second and an ETA, at most every `every_steps` steps.

    Args:
      total_steps: steps this run will take (for the ETA).
      items_per_step: e.g. images per step, for the rate.
      name: prefix of each line.
      every_steps: how often `update` prints.
      unit: what items are, in the rate ("img" -> "img/s").
      counted: what the `done/total` counts ("steps"; "checkpoints", "arms", ...).
    """

    def __init__(
        self,
        total_steps: int,
        items_per_step: int,
        name: str,
        every_steps: int = 10,
        unit: str = "img",
        counted: str = "steps",
    ):
        self.total_steps = total_steps
        self.counted = counted
        self.unit = unit
        self._finished = False
        self._message = ""
        self.items_per_step = items_per_step
        self.name = name
        self.every_steps = max(1, every_steps)
        self._start = time.perf_counter()
        self._steps_done = 0
        # The first step compiles; measure the rate from the second on so the ETA is honest.
        self._rate_start: tuple[float, int] | None = None

    def update(self, steps_done: int, message: str = "") -> float | None:
        """Records progress; prints a line every `every_steps`. Returns items/s when known."""
        now = time.perf_counter()
        if self._rate_start is None:
            self._rate_start = (now, steps_done)
        self._steps_done = steps_done
        rate = self.items_per_second(now)
        if steps_done >= self.total_steps:
            self._message = message
            self.finish()
        elif steps_done % self.every_steps == 0:
            eta = self.eta_seconds(now)
            unit_rate = self._format_rate(rate) if rate else "compiling"
            eta_text = format_duration(eta) if eta is not None else "?"
            emit(
                f"{self.name} {steps_done}/{self.total_steps} {self.counted} | {unit_rate} | "
                f"ETA {eta_text}{f' | {message}' if message else ''}"
            )
        return rate

    def finish(self) -> None:
        """Prints the closing line once: steps done, elapsed time and the mean rate."""
        if self._finished:
            return
        self._finished = True
        rate = self.items_per_second()
        emit(
            f"{self.name} done: {self._steps_done}/{self.total_steps} {self.counted} in "
            f"{format_duration(self.elapsed_seconds)}"
            + (f" | {self._format_rate(rate)}" if rate else "")
            + (f" | {self._message}" if self._message else "")
        )

    def _format_rate(self, rate: float) -> str:
        return f"{rate:.1f} {self.unit}/s" if rate >= 1 else f"{1 / rate:.1f} s/{self.unit}"

    def items_per_second(self, now: float | None = None) -> float | None:
        now = time.perf_counter() if now is None else now
        if self._rate_start is None:
            return None
        start_time, start_step = self._rate_start
        steps = self._steps_done - start_step
        if steps <= 0 or now <= start_time:
            return None
        return steps * self.items_per_step / (now - start_time)

    def eta_seconds(self, now: float | None = None) -> float | None:
        rate = self.items_per_second(now)
        if not rate:
            return None
        return (self.total_steps - self._steps_done) * self.items_per_step / rate

    @property
    def elapsed_seconds(self) -> float:
        return time.perf_counter() - self._start


def format_duration(seconds: float) -> str:
    """3725 -> '1h02m05s'; 65 -> '1m05s'; 4.2 -> '4s'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def emit(line: str) -> None:
    """Prints one progress line to standard error (process 0 only)."""
    if jax.process_index() == 0:
        print(line, file=sys.stderr, flush=True)
