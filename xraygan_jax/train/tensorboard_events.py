"""TensorBoard event files of a training run, written with tensorboardX: no TensorFlow.

    events = tensorboard_events.EventWriter(run.tensorboard_dir)
    events.start("NORMAL", step=0)                      # the TensorBoard run tensorboard/NORMAL/
    events.scalars("NORMAL", 6, {"loss/d": 0.7, "loss/g": 1.2})
    events.image("NORMAL", 6, "samples/NORMAL", grid)   # uint8 [H, W, 1 or 3]
    events.flush()
    events.close()

metrics.jsonl and eval.jsonl are the run's record; the events show the same values in
TensorBoard (`tensorboard --logdir WORKDIR/tensorboard`), one TensorBoard run per GAN, since
each GAN counts its own steps.

Resume: a run stopped after logging steps past its last checkpoint logs them again.
`start(name, step)` opens a new event file that begins with a session start at `step + 1`
(what tensorboardX's `SummaryWriter(purge_step=...)` writes): TensorBoard's reader then drops
the earlier files' events at that step or later, so each step shows once, with the values that
metrics.jsonl keeps (`runs.Run.truncate_records`).

The events are written on the caller's thread by tensorboardX's `EventsWriter`, from its
summary protos, not through `SummaryWriter`: that one writes from a background thread, its
`flush()` does not wait for the events still queued, and after one failed write the thread is
gone and the next `add_scalar` blocks for good (a full disk would hang training). Here a folder
that cannot be written (`tensorboard` is a file, no permission, a full disk) warns once
(`TensorBoardWarning`) and turns the events off for the rest of the run; training goes on.

Only process 0 writes, as for metrics.jsonl. Without tensorboardX (`pip install -e
".[tensorboard]"`) nothing is written and the log says so once.
"""

from __future__ import annotations

import numbers
import os
import pathlib
import sys
import time
import types
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from absl import logging


class TensorBoardWarning(UserWarning):
    """The TensorBoard events could not be written; training goes on (metrics.jsonl counts)."""


def import_tensorboardx() -> types.SimpleNamespace | None:
    """tensorboardX's event writer, summary protos and event protos, or None if not installed.

    tensorboardX's writer module imports torch whenever torch is installed, only to accept torch
    tensors; that costs seconds and a second framework in the process, and this library never
    imports torch, so the import is refused for that moment unless torch is loaded already.
    """
    refuse_torch = "torch" not in sys.modules
    if refuse_torch:
        sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
    try:
        from tensorboardX import event_file_writer, summary
        from tensorboardX.proto import event_pb2
    except ModuleNotFoundError as error:
        if error.name != "tensorboardX":
            raise
        return None
    finally:
        if refuse_torch:
            del sys.modules["torch"]
    return types.SimpleNamespace(
        EventsWriter=event_file_writer.EventsWriter,
        summary=summary,
        Event=event_pb2.Event,
        SessionLog=event_pb2.SessionLog,
    )


class EventWriter:
    """Event files of a run's GANs under `directory`, one sub-folder (TensorBoard run) per GAN.

    Args:
      directory: the run's TensorBoard folder (`runs.Run.tensorboard_dir`).
      enabled: False writes nothing (`config.train.tensorboard`).
    """

    def __init__(self, directory: str | os.PathLike, *, enabled: bool = True):
        self.directory = pathlib.Path(directory)
        self._writers: dict[str, Any] = {}
        self._tbx = None
        if enabled and jax.process_index() == 0:
            self._tbx = import_tensorboardx()
            if self._tbx is None:
                logging.info(
                    "tensorboardX is not installed, so no TensorBoard events in %s "
                    '(pip install -e ".[tensorboard]")',
                    self.directory,
                )

    @property
    def active(self) -> bool:
        """Whether events are being written (enabled, process 0, installed, no failure yet)."""
        return self._tbx is not None

    def start(self, name: str, step: int) -> None:
        """Opens a new event file for GAN `name`, which continues after training step `step`.

        Events an earlier attempt wrote past `step` are hidden from TensorBoard (see the module
        docstring), so a resumed GAN shows each step once.
        """
        if not self.active:
            return
        first = step + 1

        def open_file():
            folder = self.directory / name
            folder.mkdir(parents=True, exist_ok=True)
            # The suffix orders files of the same second (the name's timestamp) by their first
            # step; a file of the same second and step is replaced, and it held only steps that
            # this attempt writes again.
            writer = self._tbx.EventsWriter(str(folder / "events"), f".{first:010d}")
            self._writers[name] = writer
            start = self._tbx.SessionLog(status=self._tbx.SessionLog.START)
            writer.write_event(
                self._tbx.Event(wall_time=time.time(), step=first, session_log=start)
            )

        self._guard(open_file)

    def scalars(self, name: str, step: int, values: Mapping[str, Any]) -> None:
        """One scalar per numeric entry of `values` (tags are the keys); others are skipped."""
        writer = self._writers.get(name)
        if writer is None:
            return
        summaries = [
            self._tbx.summary.scalar(tag, float(value))
            for tag, value in values.items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool)
        ]
        self._guard(lambda: self._write(writer, step, *summaries))

    def image(self, name: str, step: int, tag: str, image: np.ndarray) -> None:
        """An image, uint8 [H, W, C] with C 1 (gray) or 3."""
        writer = self._writers.get(name)
        if writer is None:
            return
        summary = self._tbx.summary.image(tag, np.asarray(image, np.uint8), dataformats="HWC")
        self._guard(lambda: self._write(writer, step, summary))

    def flush(self) -> None:
        for writer in list(self._writers.values()):
            self._guard(writer.flush)

    def close(self) -> None:
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            self._guard(writer.close)

    def _write(self, writer, step: int, *summaries) -> None:
        now = time.time()
        for summary in summaries:
            writer.write_event(self._tbx.Event(wall_time=now, step=step, summary=summary))

    def _guard(self, write) -> None:
        """Runs `write`; an OSError warns once and turns the events off for the run."""
        if not self.active:
            return
        try:
            write()
        except OSError as error:
            self._tbx = None
            writers, self._writers = self._writers, {}
            for writer in writers.values():
                try:
                    writer.close()
                except OSError:
                    pass  # The same failure again; it has been reported below.
            warnings.warn(
                f"TensorBoard events are off for the rest of this run: {error}. metrics.jsonl "
                f"and eval.jsonl still get every value; make {self.directory} a writable "
                "folder, or set --config.train.tensorboard=false.",
                TensorBoardWarning,
                stacklevel=3,
            )
