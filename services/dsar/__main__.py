"""`python -m services.dsar worker -l warning` runs the DSAR service."""

import sys

from services.dsar import agents, views  # noqa: F401  (registers agents and pages)
from services.dsar.app import app

#: faust's CLI knows `warn` and `crit` only; accept the usual logging names too.
_LEVELS = {"warning": "warn", "critical": "crit"}


def _normalise_log_level(argv: list[str]) -> list[str]:
    out: list[str] = []
    for index, arg in enumerate(argv):
        if index > 0 and argv[index - 1] in ("-l", "--loglevel"):
            arg = _LEVELS.get(arg.lower(), arg)
        elif arg.startswith("--loglevel="):
            name, _, value = arg.partition("=")
            arg = f"{name}={_LEVELS.get(value.lower(), value)}"
        out.append(arg)
    return out


if __name__ == "__main__":
    sys.argv = _normalise_log_level(sys.argv)
    app.main()
