"""queuectld, the daemon that owns a queuectl queue."""
