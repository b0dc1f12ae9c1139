"""PySide6 + pyqtgraph operator window. Imported only by main.py (and its own tests)."""

from __future__ import annotations

import sys


def qt_binding_problem() -> str | None:
    """Why the installed Qt binding cannot run this window, or None when it can.

    PySide6 6.12.0 drops a reference to None on every call of a void C++ method when run on
    Python 3.11 (None became immortal only in 3.12), so any window aborts with
    "Fatal Python error: none_dealloc" after a few thousand calls; 6.11.3 does not.
    """
    try:
        import PySide6
    except ImportError:
        return "PySide6 is not installed (pip install 'PySide6-Essentials>=6.6,<6.12')"
    version = tuple(PySide6.__version_info__[:2])
    if sys.version_info < (3, 12) and version == (6, 12):
        return (f"PySide6 {PySide6.__version__} corrupts reference counts on Python "
                f"{sys.version_info.major}.{sys.version_info.minor} and would crash the window; "
                "install PySide6-Essentials<6.12 (e.g. 6.11.3)")
    return None
