"""The offline Xee cloud (API v4): OAuth with a consent page, OBD-dongle cars and their signals."""
