"""A socket handed in from a sibling worker counts against this worker's connection limit
(issue 13, bounded resources): served within ``GREENROOM_MAX_CONNECTIONS`` like a connection
the worker accepted itself, and answered 503 (never left waiting: a hand-off cannot wait) when
the worker is at its limit."""

import os
import socket

import gevent
from gevent.pywsgi import WSGIServer

from greenroom import Server
from greenroom.cluster import handoff as channel
from greenroom.web.handler import Handler
from greenroom.web.handoff import HandOff
from greenroom.web.limits import ConnectionLimits

REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _worker(tmp_path, max_connections):
    app = Server()
    limits = ConnectionLimits(max_connections=max_connections)
    wsgi = WSGIServer(("127.0.0.1", 0), app.wsgi_app, handler_class=Handler, log=None)
    limits.attach(wsgi)
    hand_off = HandOff("abc123-g1-w1", str(tmp_path))
    hand_off.server = wsgi
    return hand_off, limits.pool


def _hand_in(hand_off):
    """What the channel delivers: the sibling's descriptor and the bytes it had read."""
    ours, peer = socket.socketpair()
    message = channel.Message(channel.CONNECTION, ("127.0.0.1", 5555), REQUEST,
                              fd=os.dup(ours.fileno()))
    ours.close()
    hand_off._adopt(message)
    return peer


def _answer(peer):
    data = b""
    with gevent.Timeout(5):
        while chunk := peer.recv(65536):
            data += chunk
    return data


def test_a_handed_in_socket_is_served_inside_the_connection_count(tmp_path):
    hand_off, pool = _worker(tmp_path, 4)
    peer = _hand_in(hand_off)
    gevent.sleep(0)  # the adopted connection's greenlet starts
    assert len(pool) == 1  # counted while it is served
    assert _answer(peer).startswith(b"HTTP/1.1 200")


def test_at_the_limit_a_handed_in_socket_gets_503_at_once(tmp_path, caplog):
    hand_off, pool = _worker(tmp_path, 2)
    holders = [pool.spawn(gevent.sleep, 30) for _ in range(2)]  # two connections being served
    try:
        answer = _answer(_hand_in(hand_off))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"Connection: close" in head, head
        assert b"its limit" in body
        assert len(pool) == 2
        assert sum("the limit (GREENROOM_MAX_CONNECTIONS)" in r.getMessage()
                   for r in caplog.records) == 1
    finally:
        gevent.killall(holders)
