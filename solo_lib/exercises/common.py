"""What every exercise checker shares: the verdict for a wrong answer."""


class Wrong(AssertionError):
    """An answer that fails a case; the message says which and why."""


def expect(condition: bool, message: str) -> None:
    """Raises :class:`Wrong` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Wrong(message)
