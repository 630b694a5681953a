"""cloud-init user-data (cloud-init.yaml.gz): the host's folder written to the boot copy, the
packages setup.sh needs, and one runcmd that runs setup.sh; stored gzip-compressed, which
cloud-init uncompresses before it reads the YAML."""

from __future__ import annotations

from functools import lru_cache

import yaml

from lvsgen.files import CLOUD_INIT, CLOUD_INIT_DIR, LIBRARY, SETUP, File
from lvsgen.model import Host
from lvsgen.state import HostState


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings as literal blocks, so the user-data stays readable."""
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


def literal_dumper(base: type) -> type:
    dumper = type("LiteralDumper", (base,), {})
    dumper.add_representer(str, _str_presenter)
    return dumper


# libyaml's emitter is some 50 times faster than PyYAML's own; tests/test_artifacts.py checks
# that both write the same bytes, so the output does not depend on which one is installed.
_LiteralDumper = literal_dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper))


def _entry(f: File) -> dict[str, str]:
    return {"path": f"{CLOUD_INIT_DIR}/{f.path}", "owner": "root:root", "permissions": f"{f.mode:04o}", "content": f.text}


def _dump(document: dict[str, object]) -> str:
    return yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=4096)


@lru_cache(maxsize=4)
def entry_yaml(f: File) -> str:
    """The YAML of f's item in write_files, as it appears in every user-data: the engine's is
    the same bytes on every host, so its gzip member is made once (File.shared)."""
    return _dump({"write_files": [_entry(f)]}).removeprefix("write_files:\n")


def _items(files: list[File]) -> str:
    """The YAML of write_files' items for files, as they appear in the user-data."""
    return _dump({"write_files": [_entry(f) for f in files]}).removeprefix("write_files:\n") if files else ""


@lru_cache(maxsize=1)
def _runcmd() -> str:
    """The runcmd, the same on every host. A failure must be impossible to miss: runcmd fails
    (cloud-init status: error) and the console says so, not only
    /var/log/cloud-init-output.log."""
    return _dump({"runcmd": [[
        "bash", "-c",
        f'bash {CLOUD_INIT_DIR}/{SETUP} || {{ rc=$?; msg="lvsgen: {CLOUD_INIT_DIR}/{SETUP} failed with exit status $rc'
        ' and stopped at the step it names; see /var/log/cloud-init-output.log";'
        ' echo "$msg" >&2; { echo "$msg" > /dev/console; } 2>/dev/null; exit "$rc"; }',
    ]]})


def cloud_init(head: str, host: Host, files: list[File], packages: list[str]) -> str:
    """#cloud-config user-data: write the host's folder, then run its setup.sh."""
    document: dict[str, object] = {}
    # The hostname setup.sh checks: set by cloud-init before runcmd, so a cloud's own name for
    # the instance does not make setup.sh refuse.
    document["hostname"] = host.hostname.split(".", 1)[0]
    if "." in host.hostname:
        document["fqdn"] = host.hostname
    if packages:  # the host tools setup.sh needs beyond a base system: ipvsadm, nft
        document["packages"] = packages
    # Block-style YAML of a mapping is its keys' YAML one after another, and of a list its
    # items' YAML, so the document is put together from parts: the engine's item, the same
    # on every host, is emitted once per build (entry_yaml), not once per host.
    ordered = sorted(files, key=lambda f: f.path)
    at = next((i for i, f in enumerate(ordered) if f.path == LIBRARY), None)
    if at is None:
        write_files = _items(ordered)
    else:
        write_files = _items(ordered[:at]) + entry_yaml(ordered[at]) + _items(ordered[at + 1 :])
    body = _dump(document) + "write_files:\n" + write_files + _runcmd()
    return f"#cloud-config\n{head}\n{body}"


def packages(state: HostState) -> list[str]:
    """The host tools setup.sh needs beyond a base system."""
    return (["ipvsadm"] if state.host.is_director else []) + (["nftables"] if state.has_nft_table else [])


def files(state: HostState, head: str, folder: list[File]) -> list[File]:
    text = cloud_init(head, state.host, folder, packages(state))
    engine = next((entry_yaml(f) for f in folder if f.path == LIBRARY), "")
    return [File(CLOUD_INIT, text, gzip=True, shared=engine)]
