"""``python -m pcrl_lib.data.demo fetch|describe``: fetch the demo data, or summarise what is cached.

Exit status: 0 on success, 1 when fetching fails (the message says which distribution and how to retry),
2 on bad arguments (e.g. ``--timeout -5``, a ``--cache-dir`` that is a file), before anything is fetched.
"""

from __future__ import annotations

import argparse
import sys

from .fetching import WHEELS_ENV, DemoFetchError, fetch
from .summary import describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pcrl_lib.data.demo",
                                     description="Real demo data from the package registry (see data/README.md).")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download, verify and extract the demo data (idempotent)")
    get.add_argument("--cache-dir", default=None, help="where to put it (default: <repo>/data/cache/demo)")
    get.add_argument("--wheel-dir", default=None,
                     help=f"folder holding the pinned distribution files; no registry access ({WHEELS_ENV})")
    get.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per pip download")
    get.add_argument("--quiet", action="store_true", help="print nothing on success")
    show = commands.add_parser("describe", help="summarise the cached demo data")
    show.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            fetch(args.cache_dir, progress=not args.quiet, wheel_dir=args.wheel_dir, timeout=args.timeout)
        else:
            print(describe(args.cache_dir))
    except ValueError as err:  # fetch checks its arguments before any work; describe's are data errors
        print(f"error: {err}", file=sys.stderr)
        return 2 if args.command == "fetch" else 1
    except (DemoFetchError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
