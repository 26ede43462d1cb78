"""`queuectl dashboard`: a web page on the queue, served by a process of its own.

It talks to queuectld over the daemon's socket like any client; the daemon
itself never opens a TCP port.
"""
