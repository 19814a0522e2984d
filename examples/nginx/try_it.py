"""Run examples/nginx/greenroom.conf for real: nginx with TLS in front of two "machines" (two
``greenroom serve examples/chat.py:server --workers 2`` on local ports) sharing one Redis.

    python examples/nginx/try_it.py            # NGINX_BIN=/path/to/nginx if it is not on PATH

Needs an nginx binary (Debian: ``apt-get install nginx``; without root, ``apt-get download nginx
nginx-common`` and ``dpkg -x`` both into a directory) and openssl. 40 players join 8 chat
channels through wss://127.0.0.1:PORT; every channel must be one room, the rooms must live on
both machines, and every player must hear every line of its channel. Everything started here is
stopped at the end; the exit status is 0 when all of that held.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

import gevent  # noqa: E402
from gevent import ssl  # noqa: E402

from greenroom.client import Client  # noqa: E402
from greenroom.cluster.redis_embedded import find_redis_server  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def local_config(work: str, port: int, machines: dict[str, int]) -> str:
    """greenroom.conf with the example's addresses replaced by local ones, inside an nginx.conf."""
    with open(os.path.join(HERE, "greenroom.conf")) as f:
        site = "\n".join(line for line in f if not line.lstrip().startswith("#"))
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    site = site.replace("/etc/ssl/certs/game.example.com.pem", os.path.join(work, "cert.pem"))
    site = site.replace("/etc/ssl/private/game.example.com.key", os.path.join(work, "key.pem"))
    for address, local in (("10.0.0.1:2567", machines["node-a"]), ("10.0.0.2:2567", machines["node-b"])):
        site = site.replace(address, f"127.0.0.1:{local}")
    assert not re.search(r"10\.0\.0\.\d", site), "an address of the example was left"
    with open(os.path.join(work, "greenroom.conf"), "w") as f:
        f.write(site)
    return f"""daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {work}/greenroom.conf;
}}
"""


def play(endpoint: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the self-signed certificate made above
    client = Client(endpoint, ssl_context=context)
    players = [(channel, n) for channel in range(8) for n in range(5)]
    jobs = [gevent.spawn(client.join_or_create, "chat", {"name": f"p{c}-{n}", "channel": f"c{c}"}, 30)
            for c, n in players]
    gevent.joinall(jobs, timeout=60)
    failed = [repr(job.exception) for job in jobs if not job.successful()]
    assert not failed, failed
    rooms = {}
    for (channel, _), job in zip(players, jobs, strict=True):
        rooms.setdefault(channel, set()).add(job.value.room_id)
    assert all(len(ids) == 1 for ids in rooms.values()), rooms
    machines = {job.value.reservation.public_address for job in jobs}
    print("rooms on", sorted(machines))
    assert len({address.rsplit("/", 1)[-1] for address in machines}) == 2, machines
    for (channel, n), job in zip(players, jobs, strict=True):
        if n == 0:
            job.value.send("say", f"hello c{channel}")
    for (channel, _), job in zip(players, jobs, strict=True):
        line = job.value.wait_for_message("said", timeout=10)
        assert line["text"] == f"hello c{channel}", line
    gevent.joinall([gevent.spawn(job.value.leave) for job in jobs], timeout=30)


def main() -> int:
    nginx = os.environ.get("NGINX_BIN") or shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if not nginx:
        print("try_it: no nginx binary: set NGINX_BIN=/path/to/nginx", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="greenroom-nginx-")
    procs: list[subprocess.Popen] = []
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", f"{work}/key.pem", "-out", f"{work}/cert.pem"],
                       check=True, capture_output=True)
        redis_port = free_port()
        procs.append(subprocess.Popen([find_redis_server(), "--port", str(redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
        port = free_port()
        machines = {"node-a": free_port(), "node-b": free_port()}
        for name, local in machines.items():
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "greenroom.cli", "serve", os.path.join(ROOT, "examples", "chat.py:server"),
                 "--workers", "2", "--bind", f"127.0.0.1:{local}",
                 "--redis-url", f"redis://127.0.0.1:{redis_port}/0",
                 "--public-address", f"127.0.0.1:{port}/{name}"], cwd=ROOT))
        for local in machines.values():
            wait_http(f"http://127.0.0.1:{local}/health")
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(local_config(work, port, machines))
        procs.append(subprocess.Popen([nginx, "-p", work, "-c", os.path.join(work, "nginx.conf")]))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        play(f"wss://127.0.0.1:{port}")
        print("ok: 40 players in 8 channels through nginx (TLS) to two machines")
        return 0
    finally:
        for proc in reversed(procs):  # Redis last: the machines unregister on their way out
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
