"""The exception tree of car2mqtt: one root, named for the caller's decision.

    Car2MqttError
    ├── ConfigError          the user's configuration or command line is wrong: say what and stop
    └── SimulatorError       a simulator scenario request cannot be carried out

Every boundary (CLI, HTTP handlers) translates these into a clear message; a stack trace is
shown only for bugs, never for a user's own mistake.
"""

from __future__ import annotations


class Car2MqttError(Exception):
    """Root of every error car2mqtt raises on purpose."""


class ConfigError(Car2MqttError):
    """Configuration or command-line input is invalid."""


class SimulatorError(Car2MqttError):
    """A simulator scenario request cannot be carried out."""
