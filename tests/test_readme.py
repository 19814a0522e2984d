"""README.rst as a newcomer runs it: its Python blocks, its client, its ``greenroom serve`` lines.

A README that drifts from the code is the first thing a new user trips on, so its code blocks are
executed here rather than trusted. Addresses are the one thing changed: every command binds
127.0.0.1 on a free port (or a private Unix socket) and talks to the suite's Redis and MongoDB.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import urllib.request

import pytest

from conftest import ROOT, free_port, greenroom_command, sdk_project, wait_until_listening

README = os.path.join(ROOT, "README.rst")
CLIENT_DIR = os.path.join(ROOT, "examples", "client")


def code_blocks(language: str) -> list[str]:
    """The bodies of README's ``.. code-block:: LANGUAGE`` directives, dedented."""
    lines = open(README, encoding="utf-8").read().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}":
            continue
        body = []
        for text in lines[i + 1:]:
            if text.strip() and not text.startswith("   "):
                break
            body.append(text[3:])
        blocks.append("\n".join(body).strip("\n") + "\n")
    return blocks


def console_commands() -> list[str]:
    """Every ``$ ...`` command of the console blocks, continuation lines joined."""
    commands = []
    for block in code_blocks("console"):
        current = None
        for line in block.splitlines():
            if current is not None:
                current += " " + line.strip()
            elif line.startswith("$ "):
                current = line[2:].strip()
            else:
                continue
            if current.endswith("\\"):
                current = current[:-1].rstrip()
            else:
                commands.append(current)
                current = None
    return commands


def test_the_readme_has_the_blocks_this_file_runs():
    assert len(code_blocks("python")) >= 5
    assert len(code_blocks("javascript")) == 1
    assert len([c for c in console_commands() if "greenroom serve" in c]) >= 5


@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_each_python_block_runs_on_its_own(index):
    """Each block is complete: imports included, nothing defined in an earlier block assumed."""
    source = code_blocks("python")[index]
    result = subprocess.run([sys.executable, "-c", source], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"README python block {index}:\n{source}\n{result.stderr}"


def test_the_quick_start_client_is_examples_client_mjs():
    script = open(os.path.join(CLIENT_DIR, "client.mjs"), encoding="utf-8").read()
    code = "\n".join(line for line in script.splitlines() if not line.startswith("//")).strip()
    assert code_blocks("javascript")[0].strip() == code


def test_the_quick_start_client_runs_against_the_echo_example(serve_process, node_modules,
                                                               tmp_path):
    """examples/client/client.mjs, as shipped, on the SDK version its package.json pins."""
    pinned = json.load(open(os.path.join(CLIENT_DIR, "package.json")))["dependencies"]
    tested = json.load(open(os.path.join(node_modules, "package.json")))["dependencies"]
    assert tested["sdk17"] == f"npm:@colyseus/sdk@{pinned['@colyseus/sdk']}"
    sdk_project(tmp_path, node_modules, "sdk17")
    script = tmp_path / "client.mjs"
    script.write_text(open(os.path.join(CLIENT_DIR, "client.mjs"), encoding="utf-8").read())

    _proc, port = serve_process("examples/echo.py:server")
    result = subprocess.run(["node", str(script), f"ws://127.0.0.1:{port}"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("joined echo ")
    assert "welcome { sessionId: " in result.stdout
    assert 'echo {"hello":"world"}' in result.stdout
    assert "not registered" not in result.stdout + result.stderr


def serve_commands() -> list[str]:
    return [c for c in console_commands() if re.search(r"(^|\s)greenroom serve\s", c)]


def localised(command: str, tmp_path, redis_url: str, mongo_uri: str) -> tuple[dict, list, str]:
    """(environment, argv, health URL or None) of one README command, on private addresses."""
    words = shlex.split(command, comments=True)
    if words and words[-1] == "&":
        words.pop()
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[:2] == ["greenroom", "serve"], command
    argv, health = [*greenroom_command(), *words[1:]], None
    if "--bind" not in argv:
        argv += ["--bind", "127.0.0.1:2567"]
    for i, word in enumerate(argv[:-1]):
        value = argv[i + 1]
        if word == "--bind" and value.startswith("unix:"):
            argv[i + 1] = f"unix:{tmp_path}/{os.path.basename(value[5:])}"
        elif word == "--bind":
            port = free_port()
            argv[i + 1] = f"127.0.0.1:{port}"
            health = health or f"http://127.0.0.1:{port}/health"
        elif word == "--redis-url":
            argv[i + 1] = redis_url
        elif word == "--mongo-uri":
            argv[i + 1] = mongo_uri
    return env, argv, health


@pytest.mark.parametrize("command", serve_commands())
def test_each_greenroom_serve_line_starts_answers_and_stops(command, tmp_path, redis_url,
                                                             mongo_uri):
    env, argv, health = localised(command, tmp_path, redis_url, mongo_uri)
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    try:
        wait_until_listening(proc)
        if health is not None:
            with urllib.request.urlopen(health, timeout=10) as response:
                assert response.status == 200
                assert json.load(response)["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
