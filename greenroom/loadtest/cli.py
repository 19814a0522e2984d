"""``greenroom loadtest TARGET_URL``: the command line of the load tester.

Only argparse is imported until the command runs: gevent must monkey-patch before the client
code (socket, ssl) is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# The matchmaking methods a bot may use, by their protocol names.
METHODS = {"joinOrCreate": "join_or_create", "create": "create", "join": "join"}
MAX_CLIENTS = 20_000
MAX_DURATION = 24 * 3600.0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``loadtest`` subcommand to ``greenroom``'s subparsers."""
    parser = sub.add_parser(
        "loadtest", help="run bots against a greenroom or Colyseus server",
        description="Join CLIENTS bots to a room of TARGET_URL and keep them playing for "
                    "DURATION seconds; a live line on a terminal, a JSON summary as the last "
                    "line of output. Exit 0 when every bot joined and stayed, 1 otherwise, "
                    "2 for a bad command line.")
    parser.add_argument("target", metavar="TARGET_URL",
                        help="ws://, wss://, http:// or https:// address of the server (with its "
                             "path prefix, if any, e.g. ws://host:2567/v18)")
    parser.add_argument("--room", required=True, help="room name to join")
    parser.add_argument("--clients", "-c", type=_bounded(int, 1, MAX_CLIENTS), default=10,
                        help="bots to run (default 10)")
    parser.add_argument("--duration", "-d", type=_bounded(float, 0.1, MAX_DURATION), default=10.0,
                        help="seconds the run lasts, joins included (default 10)")
    parser.add_argument("--rate", type=_bounded(float, 0.0, 100_000.0), default=50.0,
                        help="joins per second (default 50; 0: all at once)")
    parser.add_argument("--options", type=_json_object, default={},
                        help="join options as a JSON object, the same for every bot")
    parser.add_argument("--method", choices=sorted(METHODS), default="joinOrCreate",
                        help="matchmaking method (default joinOrCreate)")
    parser.add_argument("--script", help="bot.py defining on_join / on_message / on_tick / on_leave")
    parser.add_argument("--dialect", choices=["v3", "v5"], default="v3",
                        help="wire dialect: v3 (colyseus.js 0.16, @colyseus/sdk 0.17, the default) "
                             "or v5 (@colyseus/sdk 0.18)")
    parser.add_argument("--tick", type=_bounded(float, 1.0, 60_000.0), default=100.0,
                        help="milliseconds between on_tick calls (default 100)")
    parser.add_argument("--ping-interval", type=_bounded(float, 0.0, 3600.0), default=1.0,
                        help="seconds between each bot's RTT pings (default 1; 0: no pings)")
    parser.add_argument("--join-timeout", type=_bounded(float, 0.1, 600.0), default=10.0,
                        help="seconds a join may take (default 10)")
    parser.add_argument("--decode-state", action="store_true",
                        help="decode the room state (bot.state is a dict); default: count frames only")
    return parser


def main(args: argparse.Namespace) -> int:
    from gevent import monkey

    monkey.patch_all()
    import logging

    logging.basicConfig(level="WARNING", format="greenroom loadtest: %(levelname)s %(message)s")
    from .bot import Hooks, ScriptError
    from .runner import (
        Config,
        LoadTest,
        Unreachable,
        human_summary,
        is_terminal,
        make_client,
        preflight,
    )

    config = Config(target=args.target, room=args.room, clients=args.clients,
                    duration=args.duration, rate=args.rate, options=args.options,
                    dialect=args.dialect, method=METHODS[args.method], script=args.script,
                    tick=args.tick / 1000.0, ping_interval=args.ping_interval,
                    join_timeout=args.join_timeout, decode_state=args.decode_state)
    try:
        client = make_client(config)
        hooks = Hooks.load(config.script)
    except (ValueError, ScriptError) as exc:
        return _fail(2, str(exc))
    try:
        preflight(client)
    except Unreachable as exc:
        return _fail(1, f"{config.target}: {exc}")
    terminal = is_terminal(sys.stdout)
    summary = LoadTest(config, hooks, client, progress=sys.stdout if terminal else None).run()
    if terminal:
        print(human_summary(summary))
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return _verdict(config, summary)


def _verdict(config: Any, summary: dict[str, Any]) -> int:
    """0 when every bot joined and stayed; otherwise 1, with one line saying what went wrong
    when the summary alone would leave the operator guessing."""
    if summary["connected"] == 0 and summary["failed"]:
        error = next(iter(summary["errors"]), "?")
        return _fail(1, f"{config.target}: every join failed: {error}")
    if summary["started"] < config.clients and not summary["interrupted"]:
        return _fail(1, f"only {summary['started']} of {config.clients} bots started within "
                        f"--duration {config.duration:g} s at --rate {config.rate:g}/s: raise "
                        "either, or --rate 0 for all at once")
    ok = summary["connected"] == config.clients and not (summary["failed"] or summary["dropped"])
    return 0 if ok else 1


def _fail(code: int, message: str) -> int:
    print(f"greenroom loadtest: {message}", file=sys.stderr)
    return code


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value

    return parse


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("join options must be a JSON object")
    return value
