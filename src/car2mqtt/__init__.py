"""car2mqtt: connected cars in Home Assistant over MQTT discovery."""

__version__ = "0.2.0"
