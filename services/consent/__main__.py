"""`python -m services.consent worker -l warning` runs the consent service."""

from privacy_runtime.faust_shell import run_worker
from services.consent.app import create_service
from services.consent.settings import ConsentSettings

if __name__ == "__main__":
    run_worker(create_service(ConsentSettings()).runtime)  # type: ignore[call-arg]  # from the environment
