"""The ``ctsurv`` command line.

Each module in this package that defines ``register(subparsers)`` adds one sub-command;
``register`` adds a parser and sets ``func`` to a callable taking the parsed arguments.
Modules import heavy libraries (torch, SimpleITK) inside ``func`` so that ``ctsurv --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from .. import __version__
from ..errors import CtsurvError
from ..logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctsurv", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ctsurv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging()
    try:
        result = args.func(args)
    except CtsurvError as err:
        print(f"ctsurv {args.command}: error: {err}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
