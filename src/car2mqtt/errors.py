"""The exception tree of car2mqtt: one root, named for the caller's decision.

    Car2MqttError
    ├── ConfigError              the user's configuration or command line is wrong: say what, stop
    ├── StoreError               the state file cannot be read or written
    ├── SimulatorError           a simulator scenario request cannot be carried out
    ├── AuthError                credentials were refused
    │   └── ReauthRequired       only the user can fix it: re-link the account
    ├── ProviderError            a cloud misbehaved or said no
    │   ├── ProviderUnavailable  try again later (retry_after seconds, when the cloud said)
    │   │   └── RateLimited      the cloud asked us to slow down
    │   ├── ProviderRejected     the cloud refused this request (status, detail); do not retry
    │   └── BadCloudResponse     the cloud answered something we cannot read
    ├── CommandRejected          a command from MQTT is invalid: report it, change nothing
    └── MqttError                the broker cannot be reached or refused us

Every boundary (CLI, HTTP handlers, MQTT handlers, pollers) translates these into a clear message;
a stack trace is shown only for bugs, never for a user's own mistake.
"""

from __future__ import annotations


class Car2MqttError(Exception):
    """Root of every error car2mqtt raises on purpose."""


class ConfigError(Car2MqttError):
    """Configuration or command-line input is invalid."""


class StoreError(Car2MqttError):
    """The state store cannot be used."""


class SimulatorError(Car2MqttError):
    """A simulator scenario request cannot be carried out."""


class AuthError(Car2MqttError):
    """The cloud refused our credentials."""


class ReauthRequired(AuthError):
    """The account must be re-linked by its owner; retrying will not help."""


class ProviderError(Car2MqttError):
    """A cloud request failed."""


class ProviderUnavailable(ProviderError):
    """The cloud is down, slow or unreachable; try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ProviderUnavailable):
    """The cloud asked us to slow down."""


class ProviderRejected(ProviderError):
    """The cloud refused this request; retrying the same request will not help."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class BadCloudResponse(ProviderError):
    """The cloud's answer could not be understood."""


class CommandRejected(Car2MqttError):
    """A command received over MQTT is invalid."""


class MqttError(Car2MqttError):
    """The MQTT broker cannot be used."""
