"""`autopeft dashboard`: a read-only web page that watches and re-ranks studies live."""
from __future__ import annotations

import argparse
import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="a live web page of the studies in a database",
                       description="Serve a read-only dashboard of the studies in a database: "
                                   "progress, trials, plots, and re-ranking under another "
                                   "lambda or other limits. Binds 127.0.0.1 unless --host "
                                   "says otherwise; it has no authentication.")
    p.add_argument("--storage", metavar="URL",
                   help="database URL (default: sqlite:///autopeft.db in this directory)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else is reachable "
                        "from other machines, without authentication)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                   help="how often an open page asks for news (default 1 s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autopeft.dashboard import create_app
    from autopeft.exceptions import ConfigError

    if not 0 < args.port < 65536:
        raise ConfigError("--port must be between 1 and 65535", value=args.port,
                          fix="pass --port N, e.g. --port 8080")
    if not args.poll > 0:
        raise ConfigError("--poll must be a positive number of seconds", value=args.poll,
                          fix="pass --poll 1")
    app = create_app(args.storage, poll_seconds=args.poll)
    import uvicorn

    if args.host not in LOOPBACK:
        print(f"warning: the dashboard has no authentication, and --host {args.host} makes "
              f"it reachable from other machines: anyone who can reach port {args.port} "
              f"can read every study in this database", file=sys.stderr)
    # A page that watches a search must not take CPU from it: on a busy machine the
    # scheduler lets the search run first (measured in experiments/bench_dashboard.py).
    if hasattr(os, "nice"):
        os.nice(10)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"autopeft dashboard on http://{shown}:{args.port}/ (storage: "
          f"{args.storage or 'sqlite:///autopeft.db'}; Ctrl-C stops it)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
