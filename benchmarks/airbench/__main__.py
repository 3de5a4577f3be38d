"""python -m benchmarks.airbench SUBCOMMAND [FLAGS]: run one comparison (see the package doc)."""

import importlib
import sys

from benchmarks.airbench import SUBCOMMANDS
from benchmarks.airbench import __doc__ as OVERVIEW


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = f"usage: python -m benchmarks.airbench {{{','.join(SUBCOMMANDS)}}} [FLAGS]"
    if argv[:1] in (["-h"], ["--help"]):
        print(f"{usage}\n\n{OVERVIEW.strip()}")
        return 0
    if not argv:
        print(f"{usage}\nerror: say which comparison", file=sys.stderr)
        return 2
    if argv[0] not in SUBCOMMANDS:
        print(f"error: unknown comparison {argv[0]!r}; choose one of {', '.join(SUBCOMMANDS)}",
              file=sys.stderr)
        return 2
    return importlib.import_module(f"benchmarks.airbench.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
