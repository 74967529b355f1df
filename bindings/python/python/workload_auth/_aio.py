"""The asyncio side of the blocking calls: each runs in the event loop's executor, so the loop
never blocks (the native call releases the GIL), and shares the credentials' caches."""

import asyncio
import functools
from typing import Any, Callable, Mapping, Sequence


def in_thread(
    function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> "asyncio.Future[Any]":
    """``function(*args, **kwargs)`` in the running loop's default executor, as an awaitable.
    Raises RuntimeError when no event loop runs in this thread."""
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(None, functools.partial(function, *args, **kwargs))
