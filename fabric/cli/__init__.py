"""The `fabric` command line: one sub-command module per area, each registering its parsers.

Every handler has the shape ``handler(args, config) -> exit code``. A :class:`FabricError` ends the
command with its message on stderr and exit code 1; nothing else is caught here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence

from fabric import __version__, config
from fabric.cli import (
    connectors,
    demo,
    events,
    materialize,
    query,
    sample,
    serve,
    stack,
    verify,
)
from fabric.errors import FabricError

_AREAS = (stack, connectors, sample, events, materialize, serve, query, verify, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fabric", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cdc-fabric {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress (-v) or detail (-vv)"
    )
    areas = parser.add_subparsers(dest="area", required=True, metavar="COMMAND")
    for area in _AREAS:
        area.register(areas)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; ``environ`` replaces the process environment (tests use it)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        cfg = config.load(environ)
        code: int = args.handler(args, cfg)
    except FabricError as exc:
        print(f"fabric: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
