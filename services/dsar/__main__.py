"""`python -m services.dsar worker -l warning` runs the DSAR service."""

from privacy_runtime.service import run_worker
from services.dsar import agents, views  # noqa: F401  (registers agents and pages)
from services.dsar.app import app

if __name__ == "__main__":
    run_worker(app)
