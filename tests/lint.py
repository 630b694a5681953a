"""Linters for generated artifacts, shared by tests: shellcheck, networkd's own parser."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NETWORKD = Path("/lib/systemd/systemd-networkd")


def networkd_available() -> str | None:
    """None when networkd can be run in a throw-away namespace here, else why not."""
    if not NETWORKD.exists():
        return "systemd-networkd not found: apt-get install systemd"
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        return "the networkd lint needs root, iproute2 and unshare"
    return None


def networkd_warnings(units: dict[str, str]) -> list[str]:
    """Start a real systemd-networkd in a throw-away network+mount namespace with only these
    units (relative path -> text) and return the lines in which it complains about them.

    `systemd-analyze verify` does not check .network/.netdev files; networkd itself does.
    """
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "units"
        for name, text in units.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        ns = f"lvsgenlint{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            script = f"""
                mount -o remount,ro /sys 2>/dev/null
                mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/network
                for d in /etc/systemd/network /usr/lib/systemd/network; do
                  [ -d "$d" ] && mount -t tmpfs tmpfs "$d"
                done
                cp -r {src}/. /run/systemd/network/
                SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console {NETWORKD} 2>&1 &
                pid=$!
                sleep 2
                kill $pid
                wait $pid 2>/dev/null
                true
            """
            out = subprocess.run(
                ["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", script],
                capture_output=True, text=True, timeout=30,
            ).stdout
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    prefix = "/run/systemd/network/"
    return [line.replace(prefix, "") for line in out.splitlines() if line.startswith(prefix)] + [
        line for line in out.splitlines() if "Failed to load" in line or "Failed to parse" in line
    ]
