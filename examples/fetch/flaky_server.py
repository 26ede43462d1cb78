"""A local HTTP server that fails the first two requests for each path with 503, then serves it;
a path under /missing/ is not found (404) at once."""

import http.server
import sys
from collections import Counter

seen: Counter[str] = Counter()


class Flaky(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/missing/"):
            self.send_error(404, "no such report")
            return
        seen[self.path] += 1
        if seen[self.path] <= 2:
            self.send_error(503, "busy, try again")
            return
        body = f"report for {self.path.strip('/')}: 42 rows\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stderr.write(f"server: {fmt % args}\n")


server = http.server.HTTPServer(("127.0.0.1", 0), Flaky)
print(server.server_port, flush=True)
server.serve_forever()
