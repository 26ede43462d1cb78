"""Download a URL to a file; exit 1 with the HTTP error on failure (so the queue retries)."""

import sys
import urllib.error
import urllib.request

url, out = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=10) as r:
        data = r.read()
except urllib.error.URLError as e:
    print(f"fetch {url}: {e}", file=sys.stderr)
    sys.exit(1)
with open(out, "wb") as f:
    f.write(data)
print(f"fetched {len(data)} bytes from {url}")
