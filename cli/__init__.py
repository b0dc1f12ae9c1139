"""The command line: one module per command group, each with `register(subparsers)`;
`main.py` only dispatches to them (docs/architecture.md)."""
