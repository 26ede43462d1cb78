"""Download a URL to a file.  Exits as sysexits(3) says, so a retry rule can tell what is worth retrying:
75 (EX_TEMPFAIL) when trying again may help (a 5xx answer, no answer), 1 when it will not (a 4xx answer),
2 for bad usage."""

import sys
import urllib.error
import urllib.request

if len(sys.argv) != 3:
    print("usage: fetch.py URL FILE", file=sys.stderr)
    sys.exit(2)
url, out = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(url, timeout=10) as r:
        data = r.read()
except urllib.error.HTTPError as e:
    print(f"fetch {url}: {e}", file=sys.stderr)
    sys.exit(75 if e.code >= 500 else 1)
except (urllib.error.URLError, TimeoutError) as e:
    print(f"fetch {url}: {e}", file=sys.stderr)
    sys.exit(75)
with open(out, "wb") as f:
    f.write(data)
print(f"fetched {len(data)} bytes from {url}")
