"""Listening TCP sockets of a process tree, read from /proc (Linux), for the loopback tests."""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"


def _children(pid: int) -> set[int]:
    """``pid`` and all its descendants."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return tree


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            target = os.readlink(fd.path)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_addr: str) -> str:
    """``/proc/net/tcp{,6}`` local address (little-endian hex words) -> printable IP."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return ".".join(str(b) for b in words)
    if words[:12] == b"\0" * 10 + b"\xff\xff":
        return "::ffff:" + ".".join(str(b) for b in words[12:])
    return ":".join(words[i : i + 2].hex() for i in range(0, 16, 2))


def listening_addresses(pid: int) -> dict[str, list[str]]:
    """``{"ip:port": [process names]}`` for every TCP socket that ``pid``'s tree listens on."""
    owners: dict[str, list[str]] = {}
    for p in _children(pid):
        try:
            name = Path(f"/proc/{p}/comm").read_text().strip()
        except OSError:
            continue
        for inode in _socket_inodes(p):
            owners.setdefault(inode, []).append(name)
    found: dict[str, list[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == _LISTEN and cols[9] in owners:
                ip_hex, port_hex = cols[1].split(":")
                found[f"{_address(ip_hex)}:{int(port_hex, 16)}"] = owners[cols[9]]
    return found
