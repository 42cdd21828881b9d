"""Home Assistant: the entity table and the pure builders of discovery and state payloads."""
