"""Linters for generated artifacts, shared by tests: shellcheck, networkd's own parser,
cloud-init's own schema validator."""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

NETWORKD = Path("/lib/systemd/systemd-networkd")


def networkd_available() -> str | None:
    """None when networkd can be run in a throw-away namespace here, else why not."""
    if not NETWORKD.exists():
        return "systemd-networkd not found: apt-get install systemd"
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        return "the networkd lint needs root, iproute2 and unshare"
    return None


# Sentinels, loaded after every unit under test (networkd reads each kind in name order): each
# has a key networkd warns about. The lint judges only after it has seen both warnings and
# networkd's "Enumeration completed", the positive sign that every unit was read.
SENTINELS = {
    "zz-lvsgen-lint-sentinel.netdev": "[NetDev]\nName=lintsentinel0\nKind=dummy\nLvsgenLintSentinel=1\n",
    "zz-lvsgen-lint-sentinel.network": "[Match]\nName=lintsentinel0\n\n[Network]\nLvsgenLintSentinel=1\n",
}
READ_SIGNS = [f"{name}:" for name in SENTINELS] + ["Enumeration completed"]


def networkd_warnings(units: dict[str, str], wait: float = 30.0) -> list[str]:
    """Start a real systemd-networkd in a throw-away network+mount namespace with only these
    units (relative path -> text) and return the lines in which it complains about them.

    `systemd-analyze verify` does not check .network/.netdev files; networkd itself does.
    It is stopped as soon as it has shown that it read every unit (READ_SIGNS); if it does not
    within WAIT seconds, that is an error, never an empty (passing) answer.
    """
    assert not set(units) & set(SENTINELS)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "units"
        for name, text in {**units, **SENTINELS}.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text)
        log = Path(tmp) / "networkd.log"
        ns = f"lvsgenlint{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        signs = " ".join(shlex.quote(s) for s in READ_SIGNS)
        try:
            script = f"""
                mount -o remount,ro /sys 2>/dev/null
                mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/network
                for d in /etc/systemd/network /usr/lib/systemd/network; do
                  [ -d "$d" ] && mount -t tmpfs tmpfs "$d"
                done
                cp -r {shlex.quote(str(src))}/. /run/systemd/network/
                SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console {NETWORKD} >{shlex.quote(str(log))} 2>&1 &
                pid=$!
                i=0
                while [ "$i" -lt {int(wait * 10)} ]; do
                  seen=0
                  for sign in {signs}; do grep -qF -- "$sign" {shlex.quote(str(log))} && seen=$((seen + 1)); done
                  [ "$seen" -eq {len(READ_SIGNS)} ] && break
                  sleep 0.1
                  i=$((i + 1))
                done
                kill $pid
                wait $pid 2>/dev/null
                true
            """
            subprocess.run(
                ["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", script],
                capture_output=True, text=True, timeout=wait + 30,
            )
            out = log.read_text(errors="replace")
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    missing = [sign for sign in READ_SIGNS if sign not in out]
    if missing:
        raise AssertionError(f"networkd gave no sign that it read the units ({missing} not seen in {wait} s):\n{out[-3000:]}")
    prefix = "/run/systemd/network/"
    lines = [line for line in out.splitlines() if "lvsgen-lint-sentinel" not in line]
    return [line.replace(prefix, "") for line in lines if line.startswith(prefix)] + [
        line for line in lines if "Failed to load" in line or "Failed to parse" in line
    ]


# --- cloud-init ---------------------------------------------------------------------------------


def cloud_init_available() -> str | None:
    """None when cloud-init's schema validator can be run here, else why not."""
    if shutil.which("cloud-init") is None:
        return "cloud-init not found: apt-get install --no-install-recommends cloud-init"
    return None


def _cloud_init_env() -> dict[str, str]:
    # cloud-init is a program of the system's Python: the test interpreter's settings stay out.
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


@functools.cache
def cloud_config_keys() -> frozenset[str]:
    """Every top-level key that the installed cloud-init's own schema defines.

    Before 23.4 (Debian 12 ships 22.4) `cloud-init schema` accepts an unknown top-level key in
    silence: its schema is an allOf of one part per module, with no additionalProperties: false
    at the top. From 23.4 the tool rejects such keys itself. The list is the same schema's."""
    exe = shutil.which("cloud-init")
    assert exe, cloud_init_available()
    first = Path(exe).read_text(errors="replace").split("\n", 1)[0]
    assert first.startswith("#!"), f"{exe}: no #! line, cannot find cloud-init's Python"
    code = "import json; from cloudinit.config.schema import get_schema; print(json.dumps(get_schema()))"
    run = subprocess.run([*first[2:].split(), "-c", code], capture_output=True, text=True, timeout=60, env=_cloud_init_env())
    assert run.returncode == 0, run.stderr
    schema = json.loads(run.stdout)
    keys = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        ref = part["$ref"]
        assert ref.startswith("#/$defs/"), ref
        keys |= set(schema["$defs"][ref.removeprefix("#/$defs/")].get("properties", {}))
    assert {"write_files", "runcmd", "packages"} <= keys, sorted(keys)
    return frozenset(keys)


def cloud_init_problems(path: Path) -> list[str]:
    """What cloud-init's own validator, `cloud-init schema --config-file`, says is wrong with
    this user-data file; [] when it is valid.

    The exit status alone is not enough: a deprecated key exits 0 and prints a
    "Cloud config schema deprecations: ..." line on stdout, and --annotate exits 0 even on
    errors (22.4). So the only accepted answer is exit 0, nothing on stderr, and nothing on
    stdout but the "Valid ..." line. Unknown top-level keys are checked against cloud-init's
    schema here, because cloud-init older than 23.4 does not."""
    run = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)],
        capture_output=True, text=True, timeout=120, env=_cloud_init_env(),
    )
    problems = []
    said = [line for line in run.stdout.splitlines() if line.strip() and not line.startswith("Valid ")]
    if run.returncode != 0 or run.stderr or said or not run.stdout.startswith("Valid "):
        problems.append(f"cloud-init schema --config-file {path}: exit {run.returncode}\n{run.stdout}{run.stderr}".rstrip())
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        document = None  # cloud-init has said so above
    if isinstance(document, dict):
        unknown = sorted(str(key) for key in document if key not in cloud_config_keys())
        if unknown:
            problems.append(f"{path}: top-level keys that cloud-init's schema does not define: {', '.join(unknown)}")
    return problems


def cloud_init_problems_of(paths: list[Path]) -> dict[Path, list[str]]:
    """cloud_init_problems for many files, one cloud-init process per file, run side by side."""
    cloud_config_keys()  # once, before the threads
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(paths, pool.map(cloud_init_problems, paths)))
