"""The fast paths that change autobahn's and Daphne's classes, where a socket cannot show them
(tests/api/compat/test_daphne_server.py checks the trims from inside a socket, on a real server)."""

import subprocess
import sys
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[3] / "services" / "api"


pytestmark = pytest.mark.fast_path("lean_sockets", "sweeps", "keepalive")


def test_install_patches_once_and_derives_the_protocol_class_per_configuration():
    """In a fresh interpreter (install changes classes process-wide): installed once however
    often it is called, and autobahn's own formatting untouched."""
    code = """
from server.compat import autobahn, daphne as daphne_compat
from server.ws_main import install_fast_paths
import autobahn.websocket.protocol as p
from daphne import server, ws_protocol
install_fast_paths()
install_fast_paths()
import pprint
assert p.pformat is pprint.pformat
assert server.Server.create_application.__module__ == "server.compat.daphne"
assert server.Server.timeout_checker is daphne_compat.timeout_checker
assert server.Server.application_checker is daphne_compat.application_checker
timings = p.Timings()
timings.track("connect")
text = str(timings)
assert isinstance(text, str) and "connect" in text, text
factory = ws_protocol.WebSocketFactory(None, server="x")
factory.setProtocolOptions(autoPingInterval=7)
assert factory.protocol.autoPingInterval == 7 and factory.protocol.__name__ == "WebSocketProtocol"
factory.setProtocolOptions(autoPingInterval=9)  # a second call rebuilds from the original class
assert factory.protocol.autoPingInterval == 9 and factory.protocol.__mro__[3] is ws_protocol.WebSocketProtocol
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=API, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr
