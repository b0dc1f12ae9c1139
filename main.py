"""Dark-field cover-glass inspection station: the single command-line entry.

Each module of `cli/` contributes its subcommands through `register`; this file only wires
them up, sets up logging and turns known errors into one clear line and exit status 2; an
unanticipated exception is a bug: exit status 3 with the log file's path (never 1, which a line
controller reads as a rejected sample).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from errors import EXIT_ERROR, EXIT_INTERNAL, StationError

# Modules whose `register(subparsers)` adds working subcommands, in --help order.
COMMAND_MODULES = (
    "cli.scan",        # scan, infer
    "cli.gui",         # gui
    "cli.simulate",    # simulate
    "cli.model",       # model-info
    "cli.train",       # train
    "cli.evaluate",    # evaluate
    "cli.classifier",  # classifier train | evaluate | train-station | evaluate-station
    "cli.calibrate",   # calibrate
    "cli.devices",     # devices
    "cli.recordings",  # recordings ls | show | verify | export
)

log = logging.getLogger("station")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Dark-field inspection station for smartphone cover glass.",
        epilog="Exit status: 0 success (all samples PASS), 1 a FAIL verdict or failed check, "
               "2 an error the station understood (the message says what to do), 3 an internal "
               "error (a bug; details in the log file).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on the console")
    parser.add_argument("--log-dir", type=Path, default=Path("logs"),
                        help="folder of the rotating log file station.log (default: ./logs)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def setup_logging(verbose: bool, log_dir: Path) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for old in [h for h in root.handlers if getattr(h, "station", False)]:  # a second main()
        root.removeHandler(old)
        old.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console.station = True  # type: ignore[attr-defined]
    root.addHandler(console)
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        file = RotatingFileHandler(log_dir / "station.log", maxBytes=5_000_000, backupCount=5)
    except OSError as exc:
        log.warning("no log file in %s (%s); logging to the console only", log_dir, exc)
        return
    file.setLevel(logging.DEBUG)
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    file.station = True  # type: ignore[attr-defined]
    root.addHandler(file)
    for noisy in ("matplotlib", "PIL", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.log_dir)
    log.debug("command line: %s", sys.argv)
    try:
        return int(args.func(args) or 0)
    except StationError as exc:  # every error meant for the user (errors.py)
        log.debug("error", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - a bug: say so, keep the trace in the log
        log.error("internal error", exc_info=True)
        where = args.log_dir / "station.log"
        print(f"internal error: {type(exc).__name__}: {exc}\nthis is a bug in the station "
              f"software; the full trace is in {where}. Recordings already written are kept "
              "(check them with `main.py recordings verify`).", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
