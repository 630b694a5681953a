"""Guest side of the converge test (tests/vm/test_vm_converge.py): applies a sequence of
builds to a live cluster under a steady request stream, then drift, removal, reboot and
failure checks. It records facts in /test/results.json and judges nothing.

It reuses the cluster test's driver (copied next to it as driver.py) for the topology,
the per-host namespaces and the servers. /test/steps.json says what to do.
"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, "/test")
import driver as D  # noqa: E402

STEPS = json.load(open("/test/steps.json"))
HOSTS = {h["name"]: h for h in D.TOPO["hosts"]}
LB = HOSTS[STEPS["director"]]
RESULTS = {}


def setup(host, tree, *args):
    t0 = time.monotonic()
    p = D.in_host(host, ["bash", "/test/%s/%s/setup.sh" % (tree, host["name"]), *args], check=False, timeout=600)
    return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "seconds": round(time.monotonic() - t0, 2)}


def saved():
    return D.in_host(LB, ["ipvsadm", "-S", "-n"]).stdout


def image_counts():
    """What the director's last plan and verify said of the image: "MATCHED IMAGE LIVE"; and how
    many lines of the rules file the verify read (it reads only the touched services')."""
    out = {}
    for name, rel in (("plan", "plan/image"), ("verify", "plan/verify/image"), ("verify_read", "plan/verify/desired")):
        try:
            text = open("%s/run/%s/%s" % (D.VM, LB["name"], rel)).read()
        except OSError:
            out[name] = None
            continue
        out[name] = len(text.splitlines()) if name == "verify_read" else text.strip()
    return out


def dry_run(tree):
    """The director's --dry-run of TREE on the table a run just put right: its exit status and
    what its plan said of the image."""
    p = D.in_host(LB, ["bash", "/test/%s/%s/setup.sh" % (tree, LB["name"]), "--dry-run"], check=False, timeout=600)
    return {"rc": p.returncode, "stdout": p.stdout, "image": image_counts()["plan"]}


def lb(*args, **kw):
    return D.in_host(LB, list(args), **kw)


def facts():
    """What removal may change: addresses, links, lvsgen's files, the ARP sysctls."""
    out = {}
    script = r"""
      ip -o addr show | awk '{ print $2, $4 }'
      ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print "link", $2 }'
      find /etc/sysctl.d /etc/systemd/network /etc/systemd/system /etc/modules-load.d /etc/lvsgen -type f 2>/dev/null | sed 's/^/file /'
      echo "sysctl arp_ignore $(cat /proc/sys/net/ipv4/conf/all/arp_ignore)"
    """
    for name, host in HOSTS.items():
        out[name] = sorted(D.in_host(host, ["sh", "-c", script]).stdout.splitlines())
    return out


def order(step):
    names = [h for h in HOSTS if h != LB["name"]]
    return [LB["name"]] + names if step.get("director_first") else names + [LB["name"]]


def sequence(mode):
    """mode 'lvsgen': every host runs its setup.sh of each build; mode 'restore': the same,
    except that the director loads its table with ipvsadm-restore (the baseline)."""
    D.build_topology()
    r = {"first": {n: setup(HOSTS[n], STEPS["steps"][0]["tree"]) for n in order({})}}
    for name, host in HOSTS.items():  # servers listen on VIPs their host gets only later
        if host["serve"]:
            D.nsx(name, ["sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1"])
    servers = D.start_servers()
    stop = "/vm/stop-%s" % mode
    lines = "/vm/stream-%s.txt" % mode
    stream = subprocess.Popen(["ip", "netns", "exec", "client", *D.PY, "/test/load.py", "stream", STEPS["stream_url"], stop, lines])
    slow = None
    time.sleep(3)
    r["steps"] = []
    for step in STEPS["steps"][1:]:
        if step.get("slow_download"):
            slow_out = "/vm/slow-%s.txt" % mode
            slow = subprocess.Popen(["ip", "netns", "exec", "client", *D.PY, "/test/load.py", "slow", STEPS["slow_url"], slow_out])
            time.sleep(2)
        if step.get("facts"):
            r["facts_before"] = facts()
        # The last step applies the same build again: every host's state must stay as it is.
        last = mode == "lvsgen" and step is STEPS["steps"][-1]
        before = {name: snapshot(HOSTS[name]) for name in order(step)} if last else None
        runs = {}
        for name in order(step):
            if name == LB["name"] and mode == "restore":
                t0 = time.monotonic()
                with open("/test/%s/%s/etc/lvsgen/ipvsadm.rules" % (step["tree"], name)) as rules:
                    p = D.run(D.host_args(LB, ["ipvsadm-restore"]), stdin=rules, check=False)
                runs[name] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "seconds": round(time.monotonic() - t0, 2)}
            else:
                runs[name] = setup(HOSTS[name], step["tree"])
        if step.get("facts"):
            r["facts_after"] = facts()
        entry = {"name": step["name"], "runs": runs, "saved": saved(), "image": image_counts()}
        if last:
            entry["before"], entry["after"] = before, {name: snapshot(HOSTS[name]) for name in order(step)}
        if mode == "lvsgen":
            entry["dry"] = dry_run(step["tree"])
        r["steps"].append(entry)
        D.log(mode, step["name"], {n: x["rc"] for n, x in runs.items()})
        time.sleep(2)
    if slow is not None:
        slow.wait(timeout=120)
        r["slow"] = open("/vm/slow-%s.txt" % mode).read().strip()
    open(stop, "w").close()
    stream.wait(timeout=30)
    r["stream"] = open(lines).read().splitlines()
    if mode == "lvsgen":
        r.update(drift(STEPS["steps"][-1]["tree"]))
        r.update(reboot(STEPS["steps"][-1]["tree"]))
        r.update(failure(STEPS["steps"][-1]["tree"]))
        r.update(flags(STEPS["steps"][-1]["tree"], STEPS["steps"][0]["tree"]))
    for p in servers:
        p.kill()
    D.teardown()
    return r


def drift(tree):
    r = {}
    vip, foreign = STEPS["drift_service"], STEPS["foreign_service"]
    lb("ipvsadm", "-D", "-t", vip)
    lb("ipvsadm", "-A", "-t", foreign, "-s", "rr")
    before = saved()
    r["drift_dry_run"] = setup(LB, tree, "--dry-run")
    r["drift_dry_run_unchanged"] = saved() == before
    r["drift_heal"] = setup(LB, tree)
    r["drift_saved"] = saved()
    r["drift_second"] = setup(LB, tree)
    r["drift_second_dry_run"] = setup(LB, tree, "--dry-run")
    # The same director, but its table is not lvsgen's: a foreign service stays.
    shared = STEPS["not_owned_tree"]
    r["shared_first"] = setup(LB, shared)
    lb("ipvsadm", "-A", "-t", foreign, "-s", "rr")
    r["shared_run"] = setup(LB, shared)
    r["shared_saved"] = saved()
    r["shared_dry_run"] = setup(LB, shared, "--dry-run")
    # check=False: if the shared run wrongly removed it, the test on shared_saved says so
    lb("ipvsadm", "-D", "-t", foreign, check=False)
    r["back_to_owned"] = setup(LB, tree)
    return r


def reboot(tree):
    """The director's namespace loses its table and its VIPs, as after a reboot; then the boot
    path of the generated units alone: systemd-sysctl, the boot unit's ExecStart, networkd."""
    r = {}
    lb("ipvsadm", "-C")
    lb("ip", "link", "del", "lvs0")  # the dummy that holds the director's VIPs, with them
    r["reboot_empty"] = saved()
    unit = open("/vm/etc/%s/systemd/system/lvsgen.service" % LB["name"]).read()
    r["reboot_unit"] = unit
    command = re.search(r"^ExecStart=(.+)$", unit, re.M)[1].split()
    r["reboot_wants"] = os.path.islink("/vm/etc/%s/systemd/system/multi-user.target.wants/lvsgen.service" % LB["name"])
    t0 = time.monotonic()
    p = D.in_host(LB, command, check=False, timeout=300)
    r["reboot_boot_unit"] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr, "seconds": round(time.monotonic() - t0, 2)}
    r["reboot_saved_before_network"] = saved()
    script = r"""
        mount -o remount,bind,ro /sys
        mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd
        exec /lib/systemd/systemd-networkd
    """
    networkd = subprocess.Popen(D.host_args(LB, ["sh", "-c", script]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        have = D.nsx(LB["name"], ["ip", "-o", "addr", "show"]).stdout
        if all(" %s/32 " % v in have for v in STEPS["director_vips"]):
            break
        time.sleep(0.5)
    r["reboot_addresses"] = D.nsx(LB["name"], ["ip", "-o", "addr", "show"]).stdout
    r["reboot_answers"] = D.client([{"key": "after", "protocol": "tcp", "vip": STEPS["drift_service"].rsplit(":", 1)[0], "port": int(STEPS["drift_service"].rsplit(":", 1)[1]), "n": 6}])["after"]
    r["reboot_setup_after"] = setup(LB, tree)
    networkd.kill()
    return r


def failure(tree):
    r = {}
    # A module that cannot load.
    D.run(["cp", "-a", "/test/%s/%s" % (tree, LB["name"]), "/vm/bad-module"])
    text = open("/vm/bad-module/setup.sh").read()
    text = text.replace("LVS_MODULES=(", "LVS_MODULES=('ip_vs_nosuch' ", 1)
    open("/vm/bad-module/setup.sh", "w").write(text)
    p = D.in_host(LB, ["bash", "/vm/bad-module/setup.sh"], check=False)
    r["fail_module"] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    # A line the kernel refuses: a scheduler that does not exist.
    D.run(["cp", "-a", "/test/%s/%s" % (tree, LB["name"]), "/vm/bad-rule"])
    with open("/vm/bad-rule/etc/lvsgen/ipvsadm.rules", "a") as fh:
        fh.write(STEPS["bad_rule"] + "\n")
    p = D.in_host(LB, ["bash", "/vm/bad-rule/setup.sh"], check=False)
    r["fail_rule"] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    # The cause fixed (the right folder again): a re-run completes.
    r["fail_fixed"] = setup(LB, tree)
    r["fail_fixed_saved"] = saved()
    return r


def snapshot(host):
    """Everything setup.sh may change on a host (the cluster test's snapshot: addresses, links,
    routes, sysctls, the table, lvsgen's files with their sums and modes, the unit link)."""
    return D.in_host(host, ["sh", "-c", D.SNAPSHOT]).stdout


def killed_at(host, tree, marker):
    """Run TREE's setup.sh under bash -x and kill it (SIGKILL, its whole process group) when
    the trace reaches a line containing MARKER: a run that dies halfway, at a known point."""
    cmd = D.host_args(host, ["env", "PS4=+ ", "bash", "-x", "/test/%s/%s/setup.sh" % (tree, host["name"])])
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = False
    for line in p.stderr:
        if marker in line:
            seen = True
            os.killpg(p.pid, 9)
            break
    p.stderr.close()
    p.wait(timeout=120)
    return {"marker_seen": seen, "rc": p.returncode}


def flags(tree, other):
    """setup.sh's flags on a live cluster: --dry-run changes nothing; a wrong hostname refuses
    and --force proceeds; a run killed halfway completes on the next run. OTHER is a build
    that differs from TREE (the current state) in services, real servers and VIPs."""
    r = {}
    hosts = list(HOSTS.values())
    before = {h["name"]: snapshot(h) for h in hosts}
    r["flags_dry_run"] = {h["name"]: setup(h, other, "--dry-run") for h in hosts}
    r["flags_dry_run_unchanged"] = {h["name"]: snapshot(h) == before[h["name"]] for h in hosts}
    # The director under another hostname: refused before anything changes, then --force.
    wrong = dict(LB, hostname="not-" + LB["hostname"])
    p = D.in_host(wrong, ["bash", "/test/%s/%s/setup.sh" % (other, LB["name"])], check=False)
    r["flags_wrong_hostname"] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    r["flags_wrong_hostname_unchanged"] = snapshot(LB) == before[LB["name"]]
    p = D.in_host(wrong, ["bash", "/test/%s/%s/setup.sh" % (other, LB["name"]), "--force"], check=False)
    r["flags_force"] = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
    r["flags_force_saved"] = saved()
    r["flags_back"] = setup(LB, tree)
    # Killed halfway, at three points, each time from TREE towards OTHER; the next run completes.
    r["flags_killed"] = {}
    for point, marker in (("files", "mv -f --"), ("ipvs", "lvs_ipvs_batch remove"), ("copy", "lvs_step copy")):
        k = killed_at(LB, other, marker)
        k["after_kill_saved"] = saved()
        k["resume"] = setup(LB, other)
        k["resume_saved"] = saved()
        k["again"] = setup(LB, other)
        k["back"] = setup(LB, tree)
        r["flags_killed"][point] = k
    return r


def main():
    for mode in ("lvsgen", "restore"):
        t0 = time.time()
        try:
            RESULTS[mode] = sequence(mode)
        except Exception as err:
            RESULTS[mode] = {"error": "%s: %s" % (type(err).__name__, err)}
            D.log(mode, "failed:", err)
            D.teardown()
        D.log("mode", mode, "took", round(time.time() - t0, 1), "s")
    with open("/test/results.json", "w") as fh:
        json.dump(RESULTS, fh, indent=1, sort_keys=True)
    print("done")


if __name__ == "__main__":
    os.makedirs(D.VM, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", D.VM], check=True)
    main()
