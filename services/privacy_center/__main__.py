"""`python -m services.privacy_center` serves the privacy center on PRIVACY_CENTER_WEB_PORT (6069).

Arguments are ignored (`worker -l warning` is accepted, as the other services take it)."""

from privacy_runtime.logs import configure_logging
from privacy_runtime.pages.app import run
from services.privacy_center.app import create_app
from services.privacy_center.settings import PrivacyCenterSettings


def main() -> None:
    settings = PrivacyCenterSettings()  # type: ignore[call-arg]  # from the environment
    configure_logging(settings.log_level)
    run(create_app(settings), settings.web_bind, settings.privacy_center_web_port)


if __name__ == "__main__":
    main()
