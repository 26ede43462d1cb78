"""queuectl's client: the wire protocol, a blocking `Client`, and the `queuectl` CLI."""

from .connection import Client, DaemonUnavailable, RequestFailed, __version__

__all__ = ["Client", "DaemonUnavailable", "RequestFailed", "__version__"]
