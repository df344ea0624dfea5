"""The web: the aiohttp app and its routes, the listener, TLS and auth, the status page."""
