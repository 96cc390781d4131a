"""privacyctl's settings: the contract's environment variables plus the service addresses."""

from __future__ import annotations

from pydantic import SecretStr

from privacy_runtime.settings import ConnectionSettings


class CtlSettings(ConnectionSettings):
    """Read from the environment: the contract's Kafka and database variables (shared with the services),
    plus ``CONSENT_URL``/``DSAR_URL``, which are privacyctl's."""

    consent_url: str = "http://127.0.0.1:6066"
    dsar_url: str = "http://127.0.0.1:6067"
    admin_token: SecretStr = SecretStr("")
    #: Seconds to wait for a service, the broker or the database before giving up.
    privacyctl_timeout: float = 10.0
