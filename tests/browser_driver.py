"""A real headless Chromium for page tests, driven through tests/browser/driver.mjs.

The browser is the Chromium binary of the npm package @sparticuz/chromium (installed from
tests/browser's lock file on first use), driven by puppeteer-core. Commands go to the driver
as JSON lines and each waits for its reply; the waits inside the browser (a selector showing
up, a text appearing) are the page's own DOM mutations, not polling from here.

The browser always exits: the driver closes it on "quit", on SIGTERM and when its stdin closes;
the fixture then kills the driver's process group and the browser by their ids.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
from typing import Any

import gevent
import gevent.event
import pytest

BROWSER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "browser")


class BrowserError(AssertionError):
    """The browser refused a command or did not answer in time."""


class Browser:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.pid: int | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, gevent.event.AsyncResult] = {}
        self._reader = gevent.spawn(self._read)

    def call(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        command_id = next(self._ids)
        result = gevent.event.AsyncResult()
        self._waiting[command_id] = result
        self.proc.stdin.write(json.dumps({"id": command_id, "op": op, **args}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = result.get(timeout=timeout)
        except gevent.Timeout:
            raise BrowserError(f"browser did not answer {op} {args} within {timeout}s") from None
        finally:
            self._waiting.pop(command_id, None)
        if "error" in reply:
            raise BrowserError(f"{op} {args}: {reply['error']}")
        return reply["ok"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # something else wrote to stdout; replies are whole JSON lines
            waiter = self._waiting.get(reply.get("id"))
            if waiter is not None:
                waiter.set(reply)
        for waiter in list(self._waiting.values()):
            waiter.set({"error": f"the browser driver exited ({self.proc.poll()})"})

    def launch(self) -> dict[str, Any]:
        info = self.call("launch", timeout=60)
        self.pid = info["pid"]
        return info

    def new_page(self, username: str | None = None, password: str | None = None) -> Page:
        auth = {} if username is None else {"username": username, "password": password}
        return Page(self, self.call("newPage", **auth))

    def close(self) -> None:
        """Quit politely, then make sure: the driver's group, then the browser, by their ids."""
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=10)
            except (BrowserError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)  # gone already, normally
            except (ProcessLookupError, PermissionError):
                pass
        self._reader.join(5)


class Page:
    def __init__(self, browser: Browser, page_id: int) -> None:
        self.browser = browser
        self.id = page_id

    def _call(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        return self.browser.call(op, timeout=timeout, page=self.id, **args)

    def goto(self, url: str) -> int | None:
        return self._call("goto", url=url)["status"]

    def wait_for(self, selector: str, text: str | None = None, timeout: float = 10.0) -> None:
        """Until ``selector`` matches (and one match contains ``text``, if given)."""
        args: dict[str, Any] = {"selector": selector, "ms": int(timeout * 1000)}
        if text is not None:
            args["text"] = text
        self._call("waitFor", timeout=timeout + 5, **args)

    def wait_gone(self, selector: str, timeout: float = 10.0) -> None:
        self._call("waitGone", timeout=timeout + 5, selector=selector, ms=int(timeout * 1000))

    def click(self, selector: str) -> None:
        self._call("click", selector=selector)

    def texts(self, selector: str) -> list[str]:
        return self._call("texts", selector=selector)

    def key(self, key: str, action: str) -> None:
        self._call("key", key=key, action=action)

    def screenshot(self, path: str) -> str:
        return self._call("screenshot", path=str(path))

    def report(self) -> dict[str, list[str]]:
        """JavaScript errors the page raised and dialogs it opened (accepted) so far."""
        return self._call("report")

    def close(self) -> None:
        self._call("closePage")


def install() -> str:
    """tests/browser's node_modules, installed from its lock file (npm ci, which never rewrites it) if missing."""
    if shutil.which("node") is None:
        pytest.fail("Node.js is required for the browser tests (node not on PATH)")
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "@sparticuz", "chromium")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=BROWSER_DIR, check=True, timeout=300)
    return BROWSER_DIR


def start() -> Browser:
    proc = subprocess.Popen(["node", os.path.join(install(), "driver.mjs")], cwd=BROWSER_DIR,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    browser = Browser(proc)
    try:
        browser.launch()
    except BaseException:
        browser.close()
        raise
    return browser
