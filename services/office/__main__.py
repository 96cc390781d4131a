"""`python -m services.office`: serve the office on OFFICE_WEB_PORT (arguments such as `worker` are
accepted and ignored, so it starts like the other services)."""

from __future__ import annotations

from privacy_runtime.pages.app import run
from services.office.app import create_app
from services.office.settings import OfficeSettings


def main() -> None:
    settings = OfficeSettings()  # type: ignore[call-arg]  # values come from the environment
    run(create_app(settings), settings.web_bind, settings.office_web_port)


if __name__ == "__main__":
    main()
