"""Serve a byte-level device emulator on a pseudo-terminal, with fault injection.

The emulator owns the pty master; the driver opens the slave path (``/dev/pts/N``) with
pyserial exactly as it would open ``/dev/ttyUSB0``. Like an Arduino with DTR auto-reset, the
emulated board reboots (after ``boot_delay_s``) whenever a host opens the port; bytes that
arrive while it boots are lost, as they are on the real board.

Faults (any thread may request them): drop or garble the next replies, spray line noise,
stall (the firmware stops talking and listening, motion goes on), reboot (power glitch),
disconnect (the USB cable is pulled: the port path disappears) and replug (the cable is put
back: the board powers up on a *new* pty, as a USB adapter re-enumerates as another ttyUSB).
With an ``alias``, the emulator keeps a symbolic link to its current pty, as udev keeps
``/dev/serial/by-id/usb-<vendor>_<product>_<serial>-if00-port0``: a driver configured with
that path finds the board again after a re-plug.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import random
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class _OutputFault:
    kind: str            # "drop" | "garble" | "rewrite"
    count: int
    prefix: str
    keep_newline: bool = True
    rewrite: Callable[[str], bytes] | None = None


class PtyDevice:
    """Base class: subclasses implement the ``_on_*`` hooks and call :meth:`_emit`."""

    name = "device"
    eol = b"\r\n"

    def __init__(self, *, reset_on_open: bool = True, boot_delay_s: float = 0.05,
                 seed: int = 0, alias: str | None = None) -> None:
        self.reset_on_open = reset_on_open
        self.alias = alias
        self.boot_delay_s = boot_delay_s
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._master: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._path: str | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = False
        self._booting_until: float | None = None
        self._stall_until = 0.0
        self._faults: list[_OutputFault] = []
        self._out = bytearray()
        self._callbacks: list[Callable[[], None]] = []
        self.sent_lines: deque[str] = deque(maxlen=500)       # what the device wrote
        self.received_lines: deque[str] = deque(maxlen=500)   # what the device parsed
        self.boots = 0
        self.dropped_replies = 0
        self.garbled_replies = 0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> str:
        """Create the pty and start serving; returns the slave path for the driver."""
        if self._thread is not None:
            return self.port
        master, slave = os.openpty()
        tty.setraw(slave)                       # no echo / CR-LF translation before a host opens
        self._path = os.ttyname(slave)
        os.close(slave)                         # so the master sees hang-up until a host opens it
        fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
        self._master = master
        self._wake_r, self._wake_w = os.pipe()
        for wfd in (self._wake_r, self._wake_w):
            fcntl.fcntl(wfd, fcntl.F_SETFL, fcntl.fcntl(wfd, fcntl.F_GETFL) | os.O_NONBLOCK)
        with self._lock:
            self._power_on(time.monotonic())
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-pty", daemon=True)
        self._thread.start()
        if self.alias:
            link = f"{self.alias}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(self._path, link)
            os.replace(link, self.alias)  # atomically: a driver never sees a half-made link
        return self.port

    def stop(self) -> None:
        """Stop serving and close the pty (the slave path disappears)."""
        self._stopping.set()
        self._wakeup()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        with self._lock:
            self._close_master()
            self._close_wake_pipe()
        self._remove_alias()

    close = stop

    def _close_wake_pipe(self) -> None:
        for wfd in (self._wake_r, self._wake_w):
            if wfd is not None:
                with contextlib.suppress(OSError):
                    os.close(wfd)
        self._wake_r = self._wake_w = None

    def _remove_alias(self) -> None:
        if self.alias and os.path.islink(self.alias):
            with contextlib.suppress(OSError):
                os.unlink(self.alias)

    def __enter__(self) -> PtyDevice:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> str:
        """The path a driver opens: the alias when there is one, else the pty itself."""
        if self._path is None:
            raise RuntimeError(f"{self.name} emulator not started")
        return self.alias or self._path

    @property
    def device_path(self) -> str:
        """The pty the board is on now (changes at every re-plug)."""
        if self._path is None:
            raise RuntimeError(f"{self.name} emulator not started")
        return self._path

    @property
    def host_connected(self) -> bool:
        with self._lock:
            return self._connected

    # -- fault injection --------------------------------------------------------------------
    def drop_replies(self, count: int = 1, prefix: str = "") -> None:
        """Swallow the next ``count`` reply lines that start with ``prefix`` ('' = any)."""
        with self._lock:
            self._faults.append(_OutputFault("drop", count, prefix))

    def garble_replies(self, count: int = 1, prefix: str = "", keep_newline: bool = True) -> None:
        """Corrupt the next ``count`` matching reply lines (every byte gets its top bit set, so
        it can never parse); without ``keep_newline`` the noise runs into the next line."""
        with self._lock:
            self._faults.append(_OutputFault("garble", count, prefix, keep_newline))

    def rewrite_replies(self, rewrite: Callable[[str], bytes], count: int = 1,
                        prefix: str = "") -> None:
        """Send ``rewrite(line)`` (raw bytes, line end included if wanted) instead of the next
        ``count`` matching reply lines: plausible but wrong replies, for fuzzing the drivers."""
        with self._lock:
            self._faults.append(_OutputFault("rewrite", count, prefix, rewrite=rewrite))

    def inject_noise(self, data: bytes | None = None) -> None:
        """Write raw line noise now (default: 8 random bytes, no line end)."""
        with self._lock:
            if data is None:
                data = bytes(self._rng.randrange(0x80, 0x100) for _ in range(8))
            self._out += data
        self._wakeup()

    def stall(self, seconds: float | None) -> None:
        """Stop reading and answering for ``seconds`` (None: until :meth:`unstall`)."""
        with self._lock:
            until = math.inf if seconds is None else time.monotonic() + seconds
            self._stall_until = max(self._stall_until, until)

    def unstall(self) -> None:
        with self._lock:
            self._stall_until = 0.0

    def reboot(self) -> None:
        """Power glitch: the board restarts (state lost, greeting sent again)."""
        with self._lock:
            self._booting_until = time.monotonic() + self.boot_delay_s
        self._wakeup()

    def disconnect(self) -> None:
        """Pull the cable: the pty (and the alias) go away under the driver's feet."""
        self._stopping.set()
        self._wakeup()
        with self._lock:
            self._close_master()
        self._remove_alias()

    def replug(self) -> str:
        """Put the cable back (after `disconnect`, or pulling it first): the board powers up
        on a new pty, state lost; returns the path to open (the alias, if any)."""
        if self._thread is not None:
            self.disconnect()
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=2.0)
        with self._lock:
            self._close_wake_pipe()
        self._thread = None
        self._stopping.clear()
        spare = os.openpty()  # holds the old number, as a re-enumerated adapter gets a new one
        try:
            return self.start()
        finally:
            for fd in spare:
                os.close(fd)

    def inject(self, fault: str, **kwargs: object) -> None:
        """Name-based entry for CLIs and config: drop, garble, noise, stall, reboot,
        disconnect, replug (subclasses add their own, e.g. 'alarm')."""
        table: dict[str, Callable[..., None]] = {
            "drop": self.drop_replies, "garble": self.garble_replies,
            "noise": self.inject_noise, "stall": self.stall, "reboot": self.reboot,
            "disconnect": self.disconnect, "replug": self.replug, **self._extra_faults(),
        }
        if fault not in table:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(sorted(table))}")
        table[fault](**kwargs)

    def _extra_faults(self) -> dict[str, Callable[..., None]]:
        return {}

    def _wakeup(self) -> None:
        """Make the serving thread look at its schedule now (after a change from outside)."""
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    # -- for subclasses ---------------------------------------------------------------------
    def _emit(self, line: str) -> None:
        """Queue one reply line (lock held), applying any pending output fault."""
        data = line.encode("ascii") + self.eol
        for fault in self._faults:
            if line.startswith(fault.prefix):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                if fault.kind == "drop":
                    self.dropped_replies += 1
                    log.debug("%s: dropped reply %r", self.name, line)
                    return
                if fault.kind == "rewrite" and fault.rewrite is not None:
                    self._out += fault.rewrite(line)
                    return
                self.garbled_replies += 1
                body = bytes(b | 0x80 for b in line.encode("ascii"))
                body = bytes(b ^ self._rng.randrange(0, 0x40) for b in body)
                data = body + (self.eol if fault.keep_newline else b"")
                break
        self.sent_lines.append(line)
        self._out += data

    def _emit_raw(self, data: bytes) -> None:
        self._out += data

    def _call_later_unlocked(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` from the serving thread after the lock is released (for hooks)."""
        self._callbacks.append(fn)

    def _on_power_on(self, now: float) -> None:
        """Initial power-up (before any host): set up state."""

    def _on_boot(self, now: float) -> None:
        """The firmware (re)starts: reset state, send the greeting."""

    def _on_bytes(self, data: bytes, now: float) -> None:
        """Bytes from the host (not called while stalled or booting)."""

    def _on_tick(self, now: float) -> float | None:
        """Advance time; return the next time something is due (None: nothing scheduled)."""
        return None

    # -- internals --------------------------------------------------------------------------
    def _power_on(self, now: float) -> None:
        self._on_power_on(now)
        self._boot(now)

    def _boot(self, now: float) -> None:
        self.boots += 1
        self._booting_until = None
        self._on_boot(now)

    def _close_master(self) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
            self._connected = False

    def _stalled(self, now: float) -> bool:
        return now < self._stall_until

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:  # keep the failure visible in logs; the driver sees a dead port
            log.exception("%s emulator thread crashed", self.name)
            with self._lock:
                self._close_master()

    def _serve(self) -> None:
        poller = select.poll()
        fd = self._master
        if fd is None:
            return
        poller.register(fd, select.POLLIN)
        if self._wake_r is not None:
            poller.register(self._wake_r, select.POLLIN)
        while not self._stopping.is_set():
            with self._lock:
                now = time.monotonic()
                wake = self._on_tick(now) if not self._stalled(now) else None
                due = [t for t in (wake, self._booting_until) if t is not None]
                if self._stalled(now):
                    due.append(self._stall_until)
                timeout = min(due) - now if due else 0.1
                stalled = self._stalled(now)
                if not self._connected:
                    timeout = min(timeout, 0.01)   # notice a host opening the port quickly
            timeout = min(max(timeout, 0.001), 0.1)
            if stalled:
                time.sleep(min(timeout, 0.01))
                events = []
            else:
                try:
                    events = poller.poll(timeout * 1000.0)
                except (OSError, ValueError):
                    break
            if self._master is None:
                break
            flags = 0
            for efd, ev in events:
                if efd == fd:
                    flags |= ev
                else:                           # wake-up pipe: just empty it
                    with contextlib.suppress(OSError):
                        os.read(efd, 64)
            hup = bool(flags & (select.POLLHUP | select.POLLERR))
            with self._lock:
                if self._master is None:
                    break
                now = time.monotonic()
                data = b""
                if flags & select.POLLIN and not hup and not self._stalled(now):
                    try:                        # a stalled firmware leaves bytes unread
                        data = os.read(fd, 4096)
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EIO):
                            raise
                if hup and self._connected:
                    self._connected = False
                    log.debug("%s: host closed the port", self.name)
                elif not hup and not stalled and not self._connected:
                    # no hang-up reported any more: a host has opened the slave side
                    self._connected = True
                    if self.reset_on_open:      # DTR auto-reset of an Arduino-class board
                        self._booting_until = now + self.boot_delay_s
                        self._out.clear()       # whatever it was saying is cut off
                if data and self._booting_until is None:
                    self._on_bytes(data, now)
                if self._booting_until is not None and now >= self._booting_until:
                    self._boot(now)
                if not self._stalled(now):
                    self._on_tick(now)
                    self._flush()
                callbacks, self._callbacks = self._callbacks, []
            for cb in callbacks:
                cb()
            if hup:
                time.sleep(0.02)               # nobody listening: do not spin on POLLHUP

    def _flush(self) -> None:
        if not self._out or self._master is None:
            return
        if not self._connected:
            self._out.clear()                  # no host: the board talks into the void
            return
        try:
            n = os.write(self._master, bytes(self._out))
            del self._out[:n]
        except BlockingIOError:
            pass                               # host not reading; keep it for later
        except OSError:
            self._out.clear()
