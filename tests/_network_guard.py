"""Refuse outbound network connections: only loopback (127.0.0.0/8, ::1, localhost) and local
socket families (AF_UNIX, netlink) may be connected to.

Standard library only: ``tests/conftest.py`` installs it in the test process and copies this
file, followed by a call to :func:`install`, into a generated ``sitecustomize.py`` that every
child Python process (notebook kernels, gloo ranks, CLI subprocesses) imports at start-up
through ``PYTHONPATH``.

The error is an :class:`OSError` (``ENETUNREACH``), what an offline machine answers, so code
that copes with being offline behaves as it would there; everything else fails with a message
naming the host and port it tried.
"""
from __future__ import annotations

import errno
import ipaddress
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_INSTALLED = "_paperlib_network_guard_original"


class NetworkAccessBlocked(OSError):
    """A test tried to open a network connection to a non-loopback address."""


def is_local_address(family: int, address) -> bool:
    """Whether connecting a socket of ``family`` to ``address`` stays on this machine."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return True  # AF_UNIX, AF_NETLINK, ...: never leave the machine
    host = address[0] if isinstance(address, tuple) and address else address
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = str(host).split("%", 1)[0].strip("[]").lower()  # IPv6 scope id, [::1]
    if host in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name other than localhost: would need DNS, refused
    if getattr(ip, "ipv4_mapped", None) is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _describe(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return repr(address)


def _check(sock: socket.socket, address) -> None:
    if not is_local_address(sock.family, address):
        raise NetworkAccessBlocked(errno.ENETUNREACH,
                                   f"tests must not use the network: tried {_describe(address)}")


def install() -> None:
    """Wrap ``socket.socket.connect``, ``connect_ex`` and ``sendto`` (idempotent)."""
    cls = socket.socket
    if getattr(cls, _INSTALLED, None) is not None:
        return
    original = {name: (getattr(cls, name), name in vars(cls)) for name in ("connect", "connect_ex", "sendto")}

    def connect(self, address):
        _check(self, address)
        return original["connect"][0](self, address)

    def connect_ex(self, address):
        _check(self, address)
        return original["connect_ex"][0](self, address)

    def sendto(self, data, *args):
        if args:
            _check(self, args[-1])
        return original["sendto"][0](self, data, *args)

    cls.connect, cls.connect_ex, cls.sendto = connect, connect_ex, sendto
    setattr(cls, _INSTALLED, original)


def is_installed() -> bool:
    """Whether :func:`install` has wrapped the socket methods."""
    return getattr(socket.socket, _INSTALLED, None) is not None


def uninstall() -> None:
    """Put the original socket methods back."""
    cls = socket.socket
    original = getattr(cls, _INSTALLED, None)
    if original is None:
        return
    for name, (fn, own) in original.items():
        if own:
            setattr(cls, name, fn)
        else:
            delattr(cls, name)  # inherited from _socket.socket
    delattr(cls, _INSTALLED)
