"""`python -m services.notifier worker -l warning` runs the notifier service."""

import sys

from services.notifier import agents, views  # noqa: F401  (registers agents and pages)
from services.notifier.app import app

#: faust's -l accepts crit/error/warn/info/debug; accept the logging module's names too.
LEVEL_ALIASES = {"warning": "warn", "critical": "crit"}


def normalise_log_level(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("-l", "--loglevel") and i + 1 < len(out):
            out[i + 1] = LEVEL_ALIASES.get(out[i + 1].lower(), out[i + 1])
        elif arg.startswith("--loglevel="):
            level = arg.split("=", 1)[1]
            out[i] = f"--loglevel={LEVEL_ALIASES.get(level.lower(), level)}"
    return out


if __name__ == "__main__":
    sys.argv = normalise_log_level(sys.argv)
    app.main()
