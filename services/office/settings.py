"""Office settings: the contract's names (OFFICE_WEB_PORT, OFFICE_OPERATORS, ADMIN_TOKEN) plus where the
services it reads are (default: their local addresses from the contract's ports)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from privacy_runtime.settings import ServiceSettings


class OfficeSettings(ServiceSettings):
    office_web_port: int = 6070
    #: `name:sha256-hex-of-token` entries, separated by commas, spaces or new lines (hashes only).
    office_operators: SecretStr = Field(default=SecretStr(""))
    #: The services' HTTP APIs; empty: http://127.0.0.1:<their contract port>.
    dsar_url: str = ""
    consent_url: str = ""
    notifier_url: str = ""
    #: A signed-in session ends after this long without a request.
    office_session_idle_seconds: float = 2 * 3600.0
    #: Where operators open the office; an https:// address makes the session cookie Secure (and adds
    #: HSTS). Default: its local address.
    office_url: str = ""
    #: Dead letters read per topic for the page (the newest).
    office_dead_letters_per_topic: int = Field(default=50, ge=1, le=1000)

    def public_url(self) -> str:
        return (self.office_url or f"http://{self.web_bind}:{self.office_web_port}").rstrip("/")

    def service_url(self, name: str) -> str:
        explicit = {"dsar": self.dsar_url, "consent": self.consent_url, "notifier": self.notifier_url}[name]
        if explicit:
            return explicit.rstrip("/")
        port = {"dsar": self.dsar_web_port, "consent": self.consent_web_port, "notifier": self.notifier_web_port}[name]
        return f"http://127.0.0.1:{port}"
