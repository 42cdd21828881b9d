"""A Xee account in car2mqtt's configuration: `provider: xee`."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_core import InitErrorDetails

from car2mqtt.config import AccountBase, ConfigPath, http_url, problem, secret_text

__all__ = ["XEE_API_URL", "XEE_REDIRECT_URI", "XEE_SCOPES", "XeeAccount"]

XEE_API_URL: Final = "https://api.xee.com/v4"
# What a status bridge needs (reference/xee.md §3); account.read guards users/me.
XEE_SCOPES: Final = (
    "account.read",
    "vehicles.read",
    "vehicles.signals.read",
    "vehicles.locations.read",
)
XEE_REDIRECT_URI: Final = "http://127.0.0.1:8765/callback"


class XeeAccount(AccountBase):
    """A Xee v4 OAuth client, and the Xee user who consented (or whose password is given)."""

    provider: Literal["xee"]
    api_url: str = XEE_API_URL
    explicit_authorize_url: str | None = Field(None, alias="authorize_url")
    explicit_token_url: str | None = Field(None, alias="token_url")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    client_secret_file: ConfigPath | None = None
    redirect_uri: str = XEE_REDIRECT_URI
    scopes: tuple[str, ...] = Field(XEE_SCOPES, min_length=1)
    # The password grant, for those who prefer it to a browser consent.
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = Field(None, min_length=1)
    password_file: ConfigPath | None = None

    @field_validator("api_url", "explicit_authorize_url", "explicit_token_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    @field_validator("redirect_uri")
    @classmethod
    def _check_redirect(cls, value: str) -> str:
        # Compared character for character with the one registered at Xee: keep it as written.
        return http_url(value, keep_slash=True)

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        has_user = data.get("username") is not None
        has_password = data.get("password") is not None or data.get("password_file") is not None
        if has_user and not has_password:
            return [problem(("password",), "required with username (the password grant)")]
        if has_password and not has_user:
            return [problem(("username",), "required with password (the password grant)")]
        return []

    @property
    def authorize_url(self) -> str:
        """Where the user consents: `<api_url>/oauth/authorize` unless set."""
        return self.explicit_authorize_url or f"{self.api_url}/oauth/authorize"

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint: `<api_url>/oauth/token` unless set."""
        return self.explicit_token_url or f"{self.api_url}/oauth/token"

    def summary(self) -> str:
        """One line about this account, secrets shown as ***."""
        secret = secret_text(self.client_secret, self.client_secret_file)
        grant = (
            f"password grant as {self.username}, password "
            f"{secret_text(self.password, self.password_file)}"
            if self.username
            else f"authorization code via {self.redirect_uri}"
        )
        return (
            f"account {self.name}: xee, api {self.api_url}, token {self.token_url}, "
            f"client_id {self.client_id}, client_secret {secret}, {grant}, "
            f"poll every {self.poll_interval_s} s"
        )
