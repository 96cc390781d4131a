"""privacyctl's settings: the contract's environment variables plus the service addresses."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CtlSettings(BaseSettings):
    """Read from the environment (names as in the contract; ``CONSENT_URL``/``DSAR_URL`` are privacyctl's)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None

    database_url: str = "postgresql://privacy:privacy@127.0.0.1:5432/privacy"

    consent_url: str = "http://127.0.0.1:6066"
    dsar_url: str = "http://127.0.0.1:6067"
    admin_token: SecretStr = SecretStr("")
    #: Seconds to wait for a service, the broker or the database before giving up.
    privacyctl_timeout: float = 10.0


KAFKA_FIELDS = (
    "kafka_bootstrap_servers",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
)
