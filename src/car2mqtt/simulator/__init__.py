"""Offline simulators of the vehicle clouds car2mqtt talks to.

The simulator shares nothing with the bridge's provider code on purpose: it is built from the
vendors' specs, so tests that run the bridge against it check the bridge against the spec.
"""
