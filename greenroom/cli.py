"""``greenroom serve TARGET``: load an application's Server and serve it.

gevent's monkey-patching must come before anything imports socket, ssl, redis or pymongo
(DESIGN D6), so this module patches first and imports the rest of greenroom afterwards.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from typing import Any

from .loadtest import cli as loadtest

log = logging.getLogger("greenroom.cli")


class TargetError(Exception):
    """The TARGET argument does not name a greenroom Server."""


def parse_bind(value: str) -> tuple[str, int] | str:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``unix:/path``."""
    if value.startswith("unix:"):
        return value[5:]
    host, _, port = value.rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bind {value!r}: expected HOST:PORT or unix:PATH") from None
    if not 0 <= port_number <= 65535:
        raise argparse.ArgumentTypeError(f"--bind {value!r}: port out of range")
    return (host.strip("[]") or "0.0.0.0"), port_number


def load_target(target: str) -> Any:
    """Import ``path/to/file.py:server`` or ``package.module:server`` and return the Server."""
    module_part, _, attr = target.partition(":")
    attr = attr or "server"
    if module_part.endswith(".py") or os.sep in module_part:
        path = os.path.abspath(module_part)
        if not os.path.isfile(path):
            raise TargetError(f"{module_part}: no such file")
        sys.path.insert(0, os.path.dirname(path))
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_part)
        except ModuleNotFoundError as exc:
            raise TargetError(f"cannot import {module_part!r}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"{module_part} has no attribute {attr!r}") from None
    from .server import Server

    if not isinstance(obj, Server) and callable(obj):
        obj = obj()
    if not isinstance(obj, Server):
        raise TargetError(f"{target} is a {type(obj).__name__}, not a greenroom.Server")
    return obj


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenroom", description="greenroom multiplayer room server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve an application's rooms")
    serve.add_argument("target", help="path/to/app.py:server or package.module:server")
    serve.add_argument("--bind", "-b", type=parse_bind, default=("127.0.0.1", 2567),
                       help="HOST:PORT or unix:PATH (default 127.0.0.1:2567)")
    serve.add_argument("--log-level", default=os.environ.get("GREENROOM_LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--shutdown-timeout", type=float, default=10.0,
                       help="seconds rooms get to close on SIGTERM (default 10)")
    serve.add_argument("--access-log", action="store_true",
                       help="log one line per HTTP request (logger greenroom.access)")
    serve.add_argument("--redis-url", help="presence shared by several processes "
                       "(sets GREENROOM_REDIS_URL; default: one process, in memory)")
    serve.add_argument("--mongo-uri", help="room listings in MongoDB (sets GREENROOM_MONGO_URI)")
    serve.add_argument("--public-address", help="host:port clients use to reach this process's "
                       "room sockets (sets GREENROOM_PUBLIC_ADDRESS)")
    loadtest.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "loadtest":
        return loadtest.main(args)
    from gevent import monkey

    monkey.patch_all()
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    # The application builds its Server at import: hand it the options through the environment.
    for value, variable in ((args.redis_url, "GREENROOM_REDIS_URL"),
                            (args.mongo_uri, "GREENROOM_MONGO_URI"),
                            (args.public_address, "GREENROOM_PUBLIC_ADDRESS")):
        if value:
            os.environ[variable] = value
    from .drivers.base import DriverUnavailable
    from .presence import PresenceUnavailable

    try:
        server = load_target(args.target)
    except TargetError as exc:
        print(f"greenroom: {exc}", file=sys.stderr)
        return 2
    except (PresenceUnavailable, DriverUnavailable) as exc:
        print(f"greenroom: cannot start: {exc}", file=sys.stderr)
        return 1
    if isinstance(args.bind, str):
        from gevent import socket as gsocket

        if os.path.exists(args.bind):
            os.unlink(args.bind)
        listener = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
        listener.bind(args.bind)
        listener.listen(1024)
        server.serve_forever(listener=listener, shutdown_timeout=args.shutdown_timeout,
                             log_requests=args.access_log)
    else:
        host, port = args.bind
        server.serve_forever(host, port, shutdown_timeout=args.shutdown_timeout,
                             log_requests=args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
