"""``greenroom serve TARGET``: load an application's Server and serve it.

gevent's monkey-patching must come before anything imports socket, ssl, redis or pymongo
(docs/architecture.md, "Boot order"), so this module patches first and imports the rest of
greenroom afterwards.
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
from .protocol.dialect import from_environment as dialect_settings
from .settings import ConfigurationError, check_environment, positive_whole_number

log = logging.getLogger("greenroom.cli")


class TargetError(Exception):
    """The TARGET argument does not name a greenroom Server."""


def parse_bind(value: str) -> tuple[str, int] | str:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``unix:/path``."""
    from .cluster.listeners import parse_address

    try:
        return parse_address(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--bind {exc}") from None


def parse_workers(value: str) -> int:
    """A positive number, or ``auto``: the CPUs this process may use (affinity, cgroup quota)."""
    if value.strip().lower() == "auto":
        from .cluster.cpu import usable_cpus

        return usable_cpus()
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers {value!r}: expected a number or auto") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"--workers {value!r}: at least 1")
    return number


def parse_limit(value: str) -> int:
    """A positive whole number (``--max-rooms``, ``--max-clients``), as their variables take."""
    try:
        return positive_whole_number(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected a positive whole number "
                                         "(unset: no limit)") from None


def _env(*names: str, default: str | None = None) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return default


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


LOG_LEVELS = ["debug", "info", "warning", "error"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="greenroom", description="greenroom multiplayer room server")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    loadtest.add_parser(sub)
    return parser


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    serve = sub.add_parser(
        "serve", help="serve an application's rooms",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve the rooms of TARGET. Every option can also be set by the environment "
                    "variable named after it; the command line wins.")
    serve.add_argument("target", help="path/to/app.py:server or package.module:server")
    serve.add_argument("--bind", "-b", type=parse_bind, action="append", default=None,
                       help="HOST:PORT or unix:PATH to listen on; repeat it to listen on several "
                            "(env GREENROOM_BIND, comma-separated) [default: 127.0.0.1:2567]")
    serve.add_argument("--workers", "-w", type=parse_workers,
                       default=_env("GREENROOM_WORKERS", "WEB_CONCURRENCY", default="1"),
                       help="worker processes, or auto for one per usable CPU; more than 1 runs a "
                            "master that forks them (env GREENROOM_WORKERS, WEB_CONCURRENCY)")
    serve.add_argument("--timeout", "-t", type=float, default=_env("GREENROOM_TIMEOUT", default="30"),
                       help="seconds a worker's hub may stay blocked before the master kills and "
                            "replaces it (env GREENROOM_TIMEOUT)")
    serve.add_argument("--graceful-timeout", "--shutdown-timeout", dest="graceful_timeout", type=float,
                       default=_env("GREENROOM_GRACEFUL_TIMEOUT", default="30"),
                       help="seconds rooms get to finish on SIGTERM, and a reloaded generation's "
                            "rooms to dispose on SIGHUP (env GREENROOM_GRACEFUL_TIMEOUT)")
    serve.add_argument("--log-level", default=_env("GREENROOM_LOG_LEVEL", default="info"),
                       choices=LOG_LEVELS, help="env GREENROOM_LOG_LEVEL")
    serve.add_argument("--access-log", action="store_true",
                       default=_env("GREENROOM_ACCESS_LOG", default="") not in ("", "0", "false"),
                       help="log one line per HTTP request, logger greenroom.access "
                            "(env GREENROOM_ACCESS_LOG=1)")
    serve.add_argument("--migrate", action="store_true",
                       default=_env("GREENROOM_MIGRATE", default="") not in ("", "0", "false"),
                       help="with --workers > 1: on SIGHUP, move live rooms with their state and "
                            "clients to the new code (env GREENROOM_MIGRATE=1)")
    serve.add_argument("--redis-url", default=_env("GREENROOM_REDIS_URL", "REDIS_URL"),
                       help="Redis shared by several processes or machines; with --workers > 1 and "
                            "none, the master runs a private one (env GREENROOM_REDIS_URL)")
    serve.add_argument("--mongo-uri", default=_env("GREENROOM_MONGO_URI", "MONGO_URI"),
                       help="room listings in MongoDB (env GREENROOM_MONGO_URI)")
    serve.add_argument("--public-address", default=_env("GREENROOM_PUBLIC_ADDRESS"),
                       help="host:port[/path] clients use to reach these room sockets "
                            "(env GREENROOM_PUBLIC_ADDRESS)")
    serve.add_argument("--header-timeout", type=float, default=None,
                       help="seconds a connection may take to send its request head; also ends "
                            "keep-alive connections idle that long (env GREENROOM_HEADER_TIMEOUT) "
                            "[default: 10]")
    serve.add_argument("--max-connections", type=int, default=None,
                       help="connections one process (each worker) serves at once, room sockets "
                            "included; at the limit it stops accepting until one closes (env "
                            "GREENROOM_MAX_CONNECTIONS) [default: 10000]")
    serve.add_argument("--max-rooms", type=parse_limit, default=None,
                       help="rooms one process (each worker) holds; past it a room is created in "
                            "another process, else the request gets 523 (env GREENROOM_MAX_ROOMS; "
                            "a Server(max_rooms=) in the code wins) [default: no limit]")
    serve.add_argument("--max-clients", type=parse_limit, default=None,
                       help="seats one process (each worker) holds, reservations and seats kept "
                            "for a reconnection included; past it as --max-rooms (env "
                            "GREENROOM_MAX_CLIENTS; a Server(max_clients=) wins) "
                            "[default: no limit]")
    serve.add_argument("--dialect", default=None,
                       help="wire dialect of the root endpoint: v3 (colyseus.js 0.16, "
                            "@colyseus/sdk 0.17) or v5 (@colyseus/sdk 0.18) (env GREENROOM_DIALECT) "
                            "[default: the Server's, v3]")
    serve.add_argument("--dialect-path", action="append", default=None, metavar="PREFIX=DIALECT",
                       help="also serve DIALECT under a path prefix, e.g. /v18=v5; repeatable "
                            "(env GREENROOM_DIALECT_PATHS, comma-separated)")
    serve.add_argument("--pid-file", default=_env("GREENROOM_PID_FILE"),
                       help="write the server's (the master's) pid there (env GREENROOM_PID_FILE)")
    return serve


def _binds(args: argparse.Namespace) -> list[Any]:
    if args.bind:
        return args.bind
    raw = _env("GREENROOM_BIND", default="127.0.0.1:2567") or ""
    return [parse_bind(part.strip()) for part in raw.split(",") if part.strip()]


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "loadtest":
        return loadtest.main(args)
    try:
        binds = _binds(args)
    except argparse.ArgumentTypeError as exc:
        print(f"greenroom: {exc}", file=sys.stderr)
        return 2
    if args.log_level not in LOG_LEVELS:  # argparse checks choices on the command line only
        print(f"greenroom: GREENROOM_LOG_LEVEL={args.log_level!r}: expected one of "
              f"{', '.join(LOG_LEVELS)}", file=sys.stderr)
        return 2
    try:
        _export_limits(args)
    except ConfigurationError as exc:
        print(f"greenroom: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1:
        return serve_cluster(args, binds)
    return serve_single(args, binds)


def _export_limits(args: argparse.Namespace) -> None:
    """Connection limits travel to the Server (and the workers) through the environment; it is
    checked here so that a bad setting is one line and exit 2, not a halt of the cluster."""
    for value, variable in ((args.header_timeout, "GREENROOM_HEADER_TIMEOUT"),
                            (args.max_connections, "GREENROOM_MAX_CONNECTIONS"),
                            (args.max_rooms, "GREENROOM_MAX_ROOMS"),
                            (args.max_clients, "GREENROOM_MAX_CLIENTS")):
        if value is not None:
            os.environ[variable] = repr(value)
    if args.dialect:
        os.environ["GREENROOM_DIALECT"] = args.dialect
    if args.dialect_path:
        os.environ["GREENROOM_DIALECT_PATHS"] = ",".join(args.dialect_path)
    try:  # checked here, before any fork: a bad dialect is one line and exit 2
        dialect_settings("v3", {}, os.environ)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    check_environment()


def serve_cluster(args: argparse.Namespace, binds: list[Any]) -> int:
    """A master (no gevent here, ever) that forks ``args.workers`` workers."""
    from .cluster.config import ClusterConfig
    from .cluster.master import Master
    from .cluster.redis_embedded import RedisNotFound, find_redis_server

    _configure_logging(args.log_level)
    if not args.redis_url:
        try:
            find_redis_server()
        except RedisNotFound as exc:
            print(f"greenroom: --workers {args.workers}: {exc}", file=sys.stderr)
            return 2
    config = ClusterConfig(target=args.target, binds=binds, workers=args.workers,
                           timeout=args.timeout, graceful_timeout=args.graceful_timeout,
                           log_level=args.log_level, access_log=args.access_log,
                           redis_url=args.redis_url, mongo_uri=args.mongo_uri,
                           public_address=args.public_address, pid_file=args.pid_file,
                           migrate=args.migrate)
    return Master(config).run()


def serve_single(args: argparse.Namespace, binds: list[Any]) -> int:
    """One process, as before the cluster existed: monkey-patch, load, serve."""
    from gevent import monkey

    monkey.patch_all()
    _configure_logging(args.log_level)
    if args.migrate:
        log.warning("--migrate moves rooms between the workers of a reload: with --workers 1 "
                    "there is no reload, so it does nothing")
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
    except (TargetError, ConfigurationError) as exc:
        print(f"greenroom: {exc}", file=sys.stderr)
        return 2
    except (PresenceUnavailable, DriverUnavailable) as exc:
        print(f"greenroom: cannot start: {exc}", file=sys.stderr)
        return 1
    from .cluster.listeners import Listener  # imported after patching: gevent sockets
    from .serving import ClusterWorker

    sockets = [Listener.bind(address).sock for address in binds]
    extra = [ClusterWorker._extra_server(server, sock) for sock in sockets[1:]]
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    try:
        server.serve_forever(listener=sockets[0], shutdown_timeout=args.graceful_timeout,
                             log_requests=args.access_log)
    finally:
        for wsgi_server in extra:
            wsgi_server.stop(timeout=1)
        for address in binds:
            if isinstance(address, str) and os.path.exists(address):
                os.unlink(address)
        if args.pid_file and os.path.exists(args.pid_file):
            os.unlink(args.pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
