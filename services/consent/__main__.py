"""`python -m services.consent worker -l warning` runs the consent service."""

from privacy_runtime.service import run_worker
from services.consent import agents, views  # noqa: F401  (registers agents and pages)
from services.consent.app import app

if __name__ == "__main__":
    run_worker(app)
