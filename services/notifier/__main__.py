"""`python -m services.notifier worker -l warning` runs the notifier service."""

from privacy_runtime.service import run_worker
from services.notifier import agents, views  # noqa: F401  (registers agents and pages)
from services.notifier.app import app

if __name__ == "__main__":
    run_worker(app)
