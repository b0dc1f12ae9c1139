"""Calibration panel: run dark / LED / flat / registration calibrations from the operator window.

A self-contained QWidget. The calibration runs in a worker thread (`calibration.procedures.
CalibrationSession`); its progress, operator prompts ("place the diffuser plate") and the
result come back as queued Qt signals, so the window never blocks. On success the new file is
saved, applied to the rig it ran on (LED levels and `rig.calibration_id`, so the next scan
records it) and announced with `calibration_saved(Calibration, Path)`; the host window connects
that to whatever else must follow (the detector's dark/flat hook: `calibration.
attach_to_detector(detector, cal, exposure_us)`).

Hooking it in (main window): ``panel = CalibrationPanel(cfg, rig=rig)`` in a dock or tab while
no scan runs (the panel uses the rig's devices); with ``rig=None`` it builds its own rig from the
config for the duration of the run and closes it again.
"""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

log = logging.getLogger(__name__)

STEP_CHOICES = (("all (dark, LEDs, flat, registration)", "all"), ("dark frames", "dark"),
                ("LED balance", "leds"), ("flat field", "flat"),
                ("stage/camera registration", "registration"))


class _Bridge(QObject):
    """Signals from the worker thread; connections are queued into the GUI thread."""

    progress = Signal(str, int, int, str)  # step, done, total, message
    prompt = Signal(str)  # message: ask the operator, answer through `answer_prompt`
    finished = Signal(object, object, object, object)  # Calibration, parent, Path, error


class CalibrationPanel(QWidget):
    """Pick a step, run it with progress, see what changed, cancel at any frame."""

    calibration_saved = Signal(object, object)  # (calibration.Calibration, Path)
    failed = Signal(str)

    def __init__(self, cfg: Any, rig: Any = None, out_dir: str | Path | None = None,
                 parent: QWidget | None = None, ask_operator: bool = True):
        super().__init__(parent)
        self.cfg = cfg
        self.rig = rig
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.ask_operator = ask_operator
        self.last_calibration: Any = None
        self.last_path: Path | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._answer = threading.Event()
        self._answer_ok = False
        self._bridge = _Bridge(self)
        self._bridge.progress.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self._bridge.prompt.connect(self._on_prompt, Qt.ConnectionType.QueuedConnection)
        self._bridge.finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)
        self._build()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.step = QComboBox()
        for label, key in STEP_CHOICES:
            self.step.addItem(label, key)
        self.frames = QSpinBox()
        self.frames.setRange(0, 256)
        self.frames.setSpecialValueText("default")
        self.frames.setToolTip("frames averaged per dark / flat state (default 16 / 8)")
        self.force = QCheckBox("save even if a check fails")
        self.run_button = QPushButton("Calibrate")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.summary.setPlaceholderText("summary of the calibration and what changed")

        form = QFormLayout()
        form.addRow("step", self.step)
        form.addRow("frames", self.frames)
        form.addRow("", self.force)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(self.summary, 1)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

    # -- commands ------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @Slot()
    def start(self, step: str | None = None) -> None:
        """Run the selected step (or `step`) in a worker thread."""
        if self.running:
            return
        key = step if isinstance(step, str) else self.step.currentData()
        frames = int(self.frames.value())
        self._cancel.clear()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, 0)  # busy until the first progress report
        self.status.setText(f"calibrating: {key}")
        self._thread = threading.Thread(target=self._work, args=(key, frames,
                                                                 self.force.isChecked()),
                                        name="calibration", daemon=True)
        self._thread.start()

    @Slot()
    def cancel(self) -> None:
        self._cancel.set()
        self._answer_ok = False
        self._answer.set()
        self.status.setText("cancelling after the current frame...")

    def answer_prompt(self, ok: bool) -> None:
        """The operator's answer to a prompt (placed the plate: True; cancel: False)."""
        self._answer_ok = ok
        self._answer.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    # -- worker thread -------------------------------------------------------------------------
    def _ask(self, message: str) -> bool:
        self._answer.clear()
        self._bridge.prompt.emit(message)
        self._answer.wait()
        return self._answer_ok and not self._cancel.is_set()

    def _work(self, step: str, frames: int, force: bool) -> None:
        from dataclasses import replace

        from calibration.apply import apply_to_rig
        from calibration.checks import checks
        from calibration.procedures import CalibrationOptions, CalibrationSession, order_steps
        from calibration.store import calibration_dir, latest_calibration, save_calibration

        own_rig = None
        try:
            cfg = self.cfg
            directory = calibration_dir(cfg, self.out_dir)
            parent = latest_calibration(directory, cfg.station.name)
            rig = self.rig
            if rig is None:
                from rig.rig import build_rig

                rig = own_rig = build_rig(cfg)
                if parent is not None and tuple(parent.sensor_shape) == (
                        cfg.camera.height, cfg.camera.width):
                    apply_to_rig(rig, parent)
            options = CalibrationOptions()
            if frames:
                options = replace(options, dark_frames=frames, flat_frames=frames)
            session = CalibrationSession(
                rig, cfg, options, progress=lambda *a: self._bridge.progress.emit(*a),
                prompt=self._ask if self.ask_operator and not rig.simulated
                else None, cancel=self._cancel)
            steps = order_steps([step])
            cal = session.run(steps, parent)
            problems = checks(cal, cal.updated)
            if problems and not force:
                raise RuntimeError("check failed, not saved: " + "; ".join(problems))
            path = save_calibration(cal, directory)
            if self.rig is not None:
                apply_to_rig(self.rig, cal)
            self._bridge.finished.emit(cal, parent, path, None)
        except BaseException as exc:  # noqa: BLE001 - shown to the operator
            log.error("calibration failed: %s\n%s", exc, traceback.format_exc())
            self._bridge.finished.emit(None, None, None, exc)
        finally:
            if own_rig is not None:
                own_rig.close()

    # -- GUI thread ----------------------------------------------------------------------------
    @Slot(str, int, int, str)
    def _on_progress(self, step: str, done: int, total: int, message: str) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(min(done, max(total, 1)))
        self.status.setText(f"{step}: {done}/{total}" + (f"  {message}" if message else ""))

    @Slot(str)
    def _on_prompt(self, message: str) -> None:
        answer = QMessageBox.question(self, "Calibration", message,
                                      QMessageBox.StandardButton.Ok
                                      | QMessageBox.StandardButton.Cancel)
        self.answer_prompt(answer == QMessageBox.StandardButton.Ok)

    @Slot(object, object, object, object)
    def _on_finished(self, cal: Any, parent: Any, path: Any, error: Any) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.bar.setRange(0, 1)
        if error is not None:
            self.bar.setValue(0)
            self.status.setText(f"failed: {error}")
            self.failed.emit(str(error))
            return
        from calibration.summary import format_summary

        self.bar.setValue(1)
        self.last_calibration, self.last_path = cal, path
        self.status.setText(f"saved {path}")
        self.summary.setPlainText(format_summary(cal, parent))
        self.calibration_saved.emit(cal, path)
