"""Failures, each a test (issue 19, part 4): the network guard of the test session, a killed
notebook run, a rank that dies mid-sampling, and corrupt or wrong checkpoint and params files.

Killed training that resumes exactly, bad NIfTI files and bad CLI flags have their own tests
(``test_diffusion_train.py``, ``test_io.py``, ``test_cli_safety.py``).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

import _network_guard

# --------------------------------------------------------------------------- 1. no network


def test_guard_refuses_a_non_loopback_connect_in_process():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(_network_guard.NetworkAccessBlocked,
                           match=r"tests must not use the network: tried 192\.0\.2\.1:80"):
            s.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed, and never tried here
        with pytest.raises(OSError, match="tried 192.0.2.1:443"):
            s.connect_ex(("192.0.2.1", 443))
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        with pytest.raises(OSError, match=r"tried 2001:db8::1:80"):
            s.connect(("2001:db8::1", 80, 0, 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        with pytest.raises(OSError, match=r"tried 192\.0\.2\.1:53"):
            s.sendto(b"x", ("192.0.2.1", 53))
    with pytest.raises(OSError, match=r"tried example\.org:80"):
        socket.socket().connect(("example.org", 80))


def test_guard_lets_loopback_and_unix_sockets_through(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        for host in ("127.0.0.1", "localhost"):
            with socket.create_connection((host, server.getsockname()[1]), timeout=5):
                pass
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    assert _network_guard.is_local_address(socket.AF_INET6, ("::1", 1, 0, 0))
    assert _network_guard.is_local_address(socket.AF_INET6, ("::ffff:127.0.0.1", 1, 0, 0))
    assert not _network_guard.is_local_address(socket.AF_INET, ("10.0.0.1", 1))


def test_guard_reaches_child_python_processes(no_network):
    code = ("import socket\n"
            "try:\n    socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
            "except OSError as exc:\n    print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "NetworkAccessBlocked" in done.stdout and "tried 192.0.2.1:80" in done.stdout, done.stdout
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == no_network
