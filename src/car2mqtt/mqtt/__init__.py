"""MQTT: the topic layout of the bridge, and its link to the broker."""
