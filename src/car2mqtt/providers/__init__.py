"""Vehicle clouds behind the Provider protocol."""
