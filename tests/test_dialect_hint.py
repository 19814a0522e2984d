"""A client of the other wire dialect gets a log line that says so (issue 17, item 3).

An @colyseus/sdk 0.18 client on a v3 endpoint cannot decode JOIN_ROOM and closes without a word
("typeContext.get(...) is not a constructor" in its browser); the server's log must name the
cause and the fix. Driven with the real 0.18 SDK.
"""

import logging
import subprocess

from greenroom import Room, Server
from greenroom.schema import Schema, field

from conftest import sdk_project
from servers import wait_until

SCRIPT = """
import { Client } from "@colyseus/sdk";
const client = new Client(process.argv[2]);
const timer = setTimeout(() => process.exit(0), 8000);
try { await client.joinOrCreate("table"); } catch (e) { /* the mismatch: expected here */ }
clearTimeout(timer);
process.exit(0);
"""


class Score(Schema):
    points = field("uint16", default=0)


class Table(Room):
    def on_create(self, options):
        self.state = Score()  # the schema handshake is what the other dialect cannot decode


def test_an_sdk18_client_on_a_v3_endpoint_is_explained_in_one_line(greenroom_boot, node_modules,
                                                                    tmp_path, caplog):
    sdk_project(tmp_path, node_modules, "sdk18")
    (tmp_path / "probe.mjs").write_text(SCRIPT)
    server = Server()  # v3 only
    server.define("table", Table)
    test = greenroom_boot(server)

    def hints():
        return [r.getMessage() for r in caplog.records if "other wire dialect" in r.getMessage()]

    with caplog.at_level(logging.INFO, logger="greenroom"):
        node = subprocess.Popen(["node", "probe.mjs", test.endpoint], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: hints(), 15)
        finally:
            node.kill()
            node.wait(10)
    [line] = hints()
    assert "this endpoint speaks v3" in line and 'dialects={"/v18": "v5"}' in line
