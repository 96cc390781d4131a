"""`python -m services.dsar worker -l warning` runs the DSAR service."""

from privacy_runtime.faust_shell import run_worker
from services.dsar.app import create_service
from services.dsar.settings import DsarSettings

if __name__ == "__main__":
    run_worker(create_service(DsarSettings()).runtime)  # type: ignore[call-arg]  # from the environment
