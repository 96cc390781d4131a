"""Settings from the environment (contract names in ../shared/DESIGN.md)."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_MAP = Path(__file__).with_name("data_map.yaml")


class ConnectionSettings(BaseSettings):
    """Where Kafka and PostgreSQL are, and how to authenticate: shared by the services and privacyctl."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    #: Longest the broker holds an empty fetch. Low: an event behind records still being applied is
    #: fetched soon (aiokafka leaves such partitions out of the fetch in flight); high: less idle CPU
    #: (an idle service fetches 1000/this times a second, and the broker answers each).
    kafka_fetch_max_wait_ms: int = Field(default=20, ge=1, le=5000)

    database_url: str = "postgresql://privacy:privacy@127.0.0.1:5432/privacy"

    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]


class ServiceSettings(ConnectionSettings):
    """Settings every service shares. Environment variable names are part of the contract."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_from: str = "ISOPARTNER AB <privacy@isopartner.se>"

    privacy_master_key: SecretStr
    #: Where the wrapped per-subject keys live (DESIGN.md, "Storage and security"): another database than
    #: the data they protect, so its backups can be kept short (the shred horizon, docs/operations.md).
    #: Unset: DATABASE_URL.
    keystore_database_url: str | None = None
    #: Extension for rotation without downtime: keys wrapped by the previous master key still unwrap.
    privacy_master_key_previous: SecretStr | None = None
    admin_token: SecretStr = Field(default=SecretStr(""))
    public_base_url: str = "http://127.0.0.1:6067"
    #: Public base of the privacy center's links in emails and pages (contract; default its local address).
    privacy_center_url: str = "http://localhost:6069"
    #: Bearer token of the internal read endpoints (/v1/internal/...) that the privacy center calls
    #: (contract addition). Not ADMIN_TOKEN: the public-facing privacy center must not hold operator
    #: powers. Empty: those endpoints answer 503 (ADMIN_TOKEN is accepted there too).
    service_token: SecretStr = Field(default=SecretStr(""))
    #: Contact address from the privacy policy, named in every email.
    privacy_contact_email: str = "privacy@isopartner.se"

    consent_web_port: int = 6066
    dsar_web_port: int = 6067
    notifier_web_port: int = 6068
    web_bind: str = "127.0.0.1"

    data_map_path: Path = DEFAULT_DATA_MAP
    #: Kafka consumer group; default `privacy-<service>`. Set it to run a second, independent copy.
    consumer_group: str | None = None
    #: Max events handled in one database transaction (one poll of the consumer).
    batch_max_events: int = 1000
    log_level: str = "INFO"
    #: How a service issues commands (consent and dsar): respond_by and the re-send backoff.
    command_respond_within_seconds: float = 7 * 86400
    command_resend_base_seconds: float = 30.0
    command_resend_max_seconds: float = 6 * 3600
    #: How often commands past respond_by are reported and outstanding commands counted.
    command_check_seconds: float = 15.0
    #: How long deduplication records are kept (privacy_runtime/housekeeping.py), and how often the
    #: old ones are deleted.
    processed_events_retention_days: float = Field(default=30.0, ge=15.0)
    handled_commands_retention_days: float = Field(default=90.0, ge=15.0)
    housekeeping_seconds: float = Field(default=3600.0, gt=0)
    #: `GET /v1/admin/audit/verify` answers with a verification at most this old (`?fresh=true`: now).
    #: Walking a long chain takes seconds; the office's audit page should not.
    audit_verify_max_age_seconds: float = Field(default=300.0, ge=0)
    #: Where faust keeps its local state (tables are not used; faust still wants a folder).
    state_dir: Path = Path("var/state")

    @field_validator("privacy_master_key", "privacy_master_key_previous")
    @classmethod
    def _is_32_bytes_base64(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            raw = base64.b64decode(value.get_secret_value(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("PRIVACY_MASTER_KEY must be base64") from exc
        if len(raw) != 32:
            raise ValueError(f"PRIVACY_MASTER_KEY must decode to 32 bytes, got {len(raw)}")
        return value

    def keystore_url(self) -> str:
        return self.keystore_database_url or self.database_url

    def separate_keystore(self) -> bool:
        return self.keystore_url() != self.database_url

    def master_key(self) -> bytes:
        return base64.b64decode(self.privacy_master_key.get_secret_value())

    def previous_master_key(self) -> bytes | None:
        if self.privacy_master_key_previous is None:
            return None
        return base64.b64decode(self.privacy_master_key_previous.get_secret_value())
