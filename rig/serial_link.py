"""One serial port owned by a device driver: open / close, byte I/O, and what a lost port means.

The GRBL stage and the ring light each *have* a `SerialLink` (a device with a serial port is
not a serial port); the link knows nothing of their protocols. Its errors are the owner's
exception types (`LinkErrors`), so callers keep catching `StageError` / `RingLightError`.
Once a read or write fails the link is *lost*: every later call raises until the owner
closes and opens it again. pyserial is imported here and in the modules that wrap it only.

A USB serial adapter that is unplugged and plugged back may come back as another
``/dev/ttyUSBn``. With a ``serial_number`` the link finds it again by the adapter's USB serial
number at every open (pyserial's `list_ports`); the alternative is a stable udev name such as
``/dev/serial/by-id/usb-FTDI_..._A50285BI-if00-port0`` as the port (docs/grbl-stage.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

READ_SLICE_S = 0.02  # serial read timeout: the granularity of every wait loop
WRITE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class LinkErrors:
    """The owner's exception types, each constructed as ``cls(message, port=port)``."""

    connection: Callable[..., Exception]  # cannot open, or lost (called with message, port=)
    state: Callable[..., Exception]  # not open
    timeout: Callable[..., Exception]  # a write that the device does not take


def port_for_serial_number(serial_number: str, ports: Iterable[Any] | None = None
                           ) -> str | None:
    """The device path of the USB serial adapter with this serial number, or None.
    `ports`: what pyserial's `list_ports.comports()` reports (objects with ``device`` and
    ``serial_number``; the default asks the OS now)."""
    if ports is None:
        from serial.tools import list_ports

        ports = list_ports.comports()
    found = [p.device for p in ports if (p.serial_number or "") == serial_number]
    return sorted(found)[0] if found else None


class SerialLink:
    def __init__(self, port: str, baudrate: int, *, name: str, errors: LinkErrors,
                 open_failure: str, factory: Callable[..., Any] | None = None,
                 serial_number: str = "") -> None:
        """`name`: the device in messages ("GRBL"); `open_failure`: the message when the port
        cannot be opened, formatted with ``port`` and ``exc``, naming the config key to fix;
        `serial_number`: find the port by the adapter's USB serial number at each open."""
        self.configured_port, self.serial_number = port, serial_number
        self.port, self.baudrate = port, baudrate
        self.name, self.errors, self.open_failure = name, errors, open_failure
        self._factory = factory
        self._ser: Any = None
        self._write_lock = threading.Lock()
        self.lost_reason: str | None = None

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        factory = self._factory
        if factory is None:
            import serial

            factory = serial.serial_for_url
        if self.serial_number:
            found = port_for_serial_number(self.serial_number)
            if found is None and not self.configured_port:
                raise self.errors.connection(
                    f"no USB serial adapter with serial number {self.serial_number!r} for "
                    f"{self.name}: check the cable (`main.py devices` lists ports and their "
                    "serial numbers)", port=self.serial_number)
            self.port = found or self.configured_port
        try:
            self._ser = factory(self.port, baudrate=self.baudrate, timeout=READ_SLICE_S,
                                write_timeout=WRITE_TIMEOUT_S)
        except Exception as exc:  # SerialException, OSError, ValueError (bad URL)
            raise self.errors.connection(self.open_failure.format(port=self.port, exc=exc),
                                         port=self.port) from None
        self.lost_reason = None

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception as exc:  # closing a dead port must not mask the real error
                log.debug("closing %s: %s", self.port, exc)

    def require_open(self) -> Any:
        if self.lost_reason is not None:
            raise self.errors.connection(
                f"connection to {self.name} on {self.port} was lost ({self.lost_reason}); check "
                "the cable and power, then close() and open() again", port=self.port)
        if self._ser is None:
            raise self.errors.state(f"{self.name} on {self.port} is not open; call open() first",
                                    port=self.port)
        return self._ser

    def _lost(self, exc: BaseException) -> Exception:
        self.lost_reason = str(exc) or type(exc).__name__
        return self.errors.connection(
            f"lost connection to {self.name} on {self.port}: {self.lost_reason}. Check the "
            "cable and power, then close() and open() again.", port=self.port)

    def write(self, data: bytes) -> None:
        ser = self.require_open()
        import serial

        with self._write_lock:
            try:
                ser.write(data)
            except serial.SerialTimeoutException:
                raise self.errors.timeout(f"writing to {self.port} timed out: the controller "
                                          "is not reading", port=self.port) from None
            except (serial.SerialException, OSError) as exc:
                raise self._lost(exc) from None

    def read(self) -> bytes:
        """What is buffered, or wait up to one read slice for at least a byte."""
        ser = self.require_open()
        import serial

        try:
            return ser.read(max(1, ser.in_waiting))
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None

    def read_waiting(self) -> bytes:
        """What is buffered now, without waiting."""
        ser = self.require_open()
        import serial

        try:
            waiting = ser.in_waiting
            return ser.read(waiting) if waiting else b""
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None

    def reset_input(self) -> None:
        ser = self.require_open()
        try:
            ser.reset_input_buffer()
        except Exception as exc:
            raise self._lost(exc) from None
