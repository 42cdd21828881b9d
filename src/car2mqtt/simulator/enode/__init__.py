"""The simulated Enode cloud (API 2024-10-01)."""
