"""A fixture for the sarif tests: Bandit finds nothing here."""


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b
