"""Pure, dialect-neutral decisions of the loop: no I/O."""

__all__: list[str] = []
