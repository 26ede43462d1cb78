"""queuectl's client: the wire protocol, a blocking `Client`, and the `queuectl` CLI."""

from __future__ import annotations

from .wire import VERSION as __version__

TYPE_CHECKING = False  # typing is not imported: `queuectl status` must start fast
if TYPE_CHECKING:
    from typing import Any

    from .connection import Client, DaemonUnavailable, RequestFailed

__all__ = ["Client", "DaemonUnavailable", "RequestFailed", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `queuectl` can prepare its imports before msgspec loads.
    if name in __all__:
        from . import connection

        return getattr(connection, name)
    raise AttributeError(name)
