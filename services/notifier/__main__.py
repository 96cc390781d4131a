"""`python -m services.notifier worker -l warning` runs the notifier service."""

from privacy_runtime.faust_shell import run_worker
from services.notifier.app import create_service
from services.notifier.settings import NotifierSettings

if __name__ == "__main__":
    run_worker(create_service(NotifierSettings()).runtime)  # type: ignore[call-arg]  # from the environment
