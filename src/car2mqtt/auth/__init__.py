"""OAuth2 for the clouds: Authlib builds and parses the messages, httpx carries them."""
