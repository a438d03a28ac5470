"""The loop's anyio shell: it drives a response to a terminal state, recording every step
before and after it runs. Its entry point is :func:`responseloop.run_response_loop`."""

__all__: list[str] = []
