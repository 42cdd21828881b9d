"""An Enode account in car2mqtt's configuration: `provider: enode`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_core import InitErrorDetails

from car2mqtt.config import AccountBase, ConfigPath, http_url, lowercase, problem, secret_text
from car2mqtt.providers.enode.spec import SPEC

__all__ = ["ENODE_ENVIRONMENTS", "EnodeAccount", "EnodeEnvironment", "EnodeUrls", "EnodeWebhook"]

EnodeEnvironment = Literal["production", "sandbox"]


class EnodeUrls(NamedTuple):
    """Where one Enode environment lives."""

    api_url: str
    token_url: str


ENODE_ENVIRONMENTS: Final[Mapping[str, EnodeUrls]] = MappingProxyType(
    {
        "production": EnodeUrls(
            "https://enode-api.production.enode.io",
            "https://oauth.production.enode.io/oauth2/token",
        ),
        "sandbox": EnodeUrls(
            "https://enode-api.sandbox.enode.io",
            "https://oauth.sandbox.enode.io/oauth2/token",
        ),
    }
)


class EnodeWebhook(BaseModel):
    """`webhook:` of an Enode account: where Enode reaches the bridge's web server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_url: str

    @field_validator("public_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return http_url(value).rstrip("/")


class EnodeAccount(AccountBase):
    """An Enode client (client id and secret) and the Enode user whose cars we read."""

    provider: Literal["enode"]
    environment: EnodeEnvironment | None = None
    explicit_api_url: str | None = Field(None, alias="api_url")
    explicit_token_url: str | None = Field(None, alias="token_url")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    client_secret_file: ConfigPath | None = None
    user_id: str = Field(min_length=1)
    webhook: EnodeWebhook | None = None

    bound_reasons: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"poll_interval_s": SPEC.min_poll_reason}
    )
    # An environment names both URLs: setting one side from the environment drops the other.
    alternatives: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType(
        {
            "environment": ("api_url", "token_url"),
            "api_url": ("environment",),
            "token_url": ("environment",),
        }
    )

    @field_validator("environment", mode="before")
    @classmethod
    def _case_insensitive(cls, value: Any) -> Any:
        return lowercase(value)

    @field_validator("explicit_api_url", "explicit_token_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else http_url(value)

    @classmethod
    def _cross_check(cls, data: dict[str, Any]) -> list[InitErrorDetails]:
        environment = data.get("environment")
        api_url, token_url = data.get("api_url"), data.get("token_url")
        if environment is not None:
            if api_url is not None or token_url is not None:
                return [
                    problem(
                        ("environment",), "set either environment or api_url + token_url, not both"
                    )
                ]
            return []
        if api_url is None and token_url is None:
            return [
                problem(
                    ("environment",),
                    "required: set environment (production or sandbox), "
                    "or both api_url and token_url",
                )
            ]
        if api_url is None:
            return [problem(("api_url",), "required with token_url (or set environment instead)")]
        if token_url is None:
            return [problem(("token_url",), "required with api_url (or set environment instead)")]
        return []

    @property
    def urls(self) -> EnodeUrls:
        """The API and token URLs: the environment's, or the explicit ones."""
        if self.environment is not None:
            return ENODE_ENVIRONMENTS[self.environment]
        # Validation saw to it that both are set when no environment is.
        return EnodeUrls(self.explicit_api_url or "", self.explicit_token_url or "")

    @property
    def api_url(self) -> str:
        """The Enode API's base URL, without a trailing slash."""
        return self.urls.api_url

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint for the client-credentials grant."""
        return self.urls.token_url

    def summary(self) -> str:
        """One line about this account, secrets shown as ***."""
        where = self.environment or "custom URLs"
        secret = secret_text(self.client_secret, self.client_secret_file)
        return (
            f"account {self.name}: enode ({where}), api {self.api_url}, token {self.token_url}, "
            f"client_id {self.client_id}, client_secret {secret}, user_id {self.user_id}, "
            f"poll every {self.poll_interval_s} s"
            + (f", webhooks at {self.webhook.public_url}" if self.webhook else "")
        )
