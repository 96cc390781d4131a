"""`python -m services.consent worker` runs the consent service."""

from services.consent import agents, views  # noqa: F401  (registers agents and pages)
from services.consent.app import app

if __name__ == "__main__":
    app.main()
