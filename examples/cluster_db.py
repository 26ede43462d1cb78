"""A fresh PostgreSQL database for `make demo-cluster`, on the server the tests would use.

    python examples/cluster_db.py up     prints the database's URL, then a directory to remove at
                                         the end (a throwaway cluster's), or "-" for none
    python examples/cluster_db.py down URL DIR
                                         drops the database; stops and removes the cluster in DIR

The server: QUEUECTL_TEST_PG, else PostgreSQL on 127.0.0.1:5432 (user postgres, no password), else a
throwaway cluster started from the installed server binaries (initdb, pg_ctl), as tests/pgserver.py
finds them.  Without any of them it says how to get one, in one line, and exits 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests import pgserver


def up() -> int:
    srv = pgserver.find_server()
    if srv is None:
        print("no PostgreSQL: run one on 127.0.0.1:5432 (user postgres, trust), set QUEUECTL_TEST_PG to a URL "
              "whose user may create databases, or install the server binaries (apt-get install postgresql)",
              file=sys.stderr)
        return 1
    print(f"# PostgreSQL: {srv.origin}", file=sys.stderr)
    print(srv.create_database())
    print(srv.cluster.dir if srv.cluster is not None else "-")
    return 0


def down(url: str, where: str) -> int:
    if where == "-":
        admin = pgserver.with_database(url, "postgres")
        pgserver.Server(admin, "").drop_database(url)
        return 0
    # A throwaway cluster goes whole, its database with it.
    cmd = [os.path.join(pgserver.binaries() or "", "pg_ctl"), "-D", os.path.join(where, "data"), "-m", "immediate",
           "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, capture_output=True, check=False)
    shutil.rmtree(where, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["up"]:
        sys.exit(up())
    if sys.argv[1:2] == ["down"] and len(sys.argv) == 4:
        sys.exit(down(sys.argv[2], sys.argv[3]))
    print("usage: cluster_db.py up | down URL DIR", file=sys.stderr)
    sys.exit(2)
