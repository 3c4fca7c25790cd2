#!/usr/bin/env python3
"""Workload 7 (issue 19): Python SFTP clients through the gateway, and 10,000 reads held in flight.

Part A: one file (256 MiB) uploaded then downloaded, sha256 checked, by
  paramiko   SFTPClient.put / SFTPClient.get with paramiko's defaults
             (get prefetches: it sends every read of the file at once)
  AsyncSSH   SFTPClient.put / get with block_size 255 KiB (261,120 bytes, the most
             sshd's limits@openssh.com allows) and max_requests 128
  AsyncSSH   SFTPClient.put / get with AsyncSSH's defaults (block size from the
             server's limits@openssh.com, max_requests = 4 MiB / block, 16..128)
against the three systems of bench/run.py, alternating run by run:
  direct   client -> sshd
  gateway  client -> gateway (folder /remote mounted on the sshd) -> sshd
  rclone   client -> rclone serve sftp (sftp backend) -> sshd
Each timed figure is one client process: connect, log in, transfer, close
(measured inside the client, so Python's start and imports are not in it).
The proxies are started afresh per client, so their peak RSS is per client.
A probe first: AsyncSSH put and get of a 4 MiB file with block_size 256 KiB
(262,144) and max_requests 128 against each system, once (works or not).

Part B: tests/flow/flow_client.py in mode `hold`: one paramiko client sends
10,000 raw SFTP READs of 32 KiB at once, leaves them unread for 5 s, then
reads and checks every reply. Against a 64 MiB file whose every 4-byte
big-endian word is its offset, on the gateway's own storage, through the
gateway's sshd mount, straight to sshd, and through rclone. Reports the
process's VmHWM before and after (a fresh gateway / rclone per run); for
sshd, its session process (`sshd: gwtest@internal-sftp`), sampled every
50 ms while it lives.

Runs on its own:
    python3 bench/clients_workload.py            # cargo build --release, 3 runs, section in bench/RESULTS.md
    python3 bench/clients_workload.py --quick --debug --no-build   # smoke test, report in $TMPDIR
or as workload 7 of bench/run.py (`--workloads 7`). Must run as root.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __name__ != "__main__":
    import __main__ as R  # bench/run.py, which imports this module

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FLOW_CLIENT = REPO / "tests" / "flow" / "flow_client.py"
KiB = 1024
MiB = 1024 * KiB

# (label, library, block_size, max_requests); None = the library's default.
CLIENTS = (
    ("paramiko (defaults)", "paramiko", None, None),
    # 255 KiB, not 256: sshd (and rclone) close the connection on a 256 KiB write, and AsyncSSH
    # does not shrink a block size it is given (see the probe below and tests/tests/clients.rs).
    ("AsyncSSH 255 KiB × 128", "asyncssh", 261_120, 128),
    ("AsyncSSH (defaults)", "asyncssh", None, None),
)
SECTION_BEGIN = "<!-- workload 7: bench/clients_workload.py -->"
SECTION_END = "<!-- end of workload 7 -->"


# --------------------------------------------------------------------------
# the client processes (this file run with --_client)


def client_main(argv: list[str]) -> int:
    """One transfer in a process of its own; prints one JSON line."""
    ap = argparse.ArgumentParser(prog="clients_workload.py --_client")
    ap.add_argument("lib", choices=["paramiko", "asyncssh"])
    ap.add_argument("op", choices=["put", "get"])
    ap.add_argument("port", type=int)
    ap.add_argument("user")
    ap.add_argument("key")
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--block-size", type=int)
    ap.add_argument("--max-requests", type=int)
    a = ap.parse_args(argv)
    out: dict = {}
    if a.lib == "paramiko":
        import paramiko

        t0 = time.perf_counter()
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        c.connect("127.0.0.1", a.port, username=a.user, key_filename=a.key, look_for_keys=False,
                  allow_agent=False, timeout=30, banner_timeout=30, auth_timeout=30)
        s = c.open_sftp()
        (s.put if a.op == "put" else s.get)(a.src, a.dst)
        s.close()
        c.close()
        out["seconds"] = time.perf_counter() - t0
    else:
        import asyncio
        import warnings

        warnings.filterwarnings("ignore")
        import asyncssh

        async def go():
            opts = {}
            if a.block_size:
                opts["block_size"] = a.block_size
            if a.max_requests:
                opts["max_requests"] = a.max_requests
            t0 = time.perf_counter()
            async with asyncssh.connect("127.0.0.1", port=a.port, username=a.user, client_keys=[a.key],
                                        known_hosts=None, agent_path=None, connect_timeout=30) as conn:
                async with conn.start_sftp_client() as sftp:
                    lim = sftp.limits
                    out["server_limits"] = {"max_read_len": lim.max_read_len, "max_write_len": lim.max_write_len}
                    await (sftp.put if a.op == "put" else sftp.get)(a.src, a.dst, **opts)
            out["seconds"] = time.perf_counter() - t0

        asyncio.run(go())
    print(json.dumps(out), flush=True)
    return 0


def client_versions(python: str) -> dict:
    r = subprocess.run([python, "-W", "ignore", "-c",
                        "import paramiko, asyncssh, sys; print(paramiko.__version__, asyncssh.__version__, "
                        "sys.version.split()[0])"], capture_output=True, text=True)
    if r.returncode != 0:
        raise R.BenchError(f"{python} cannot import paramiko and asyncssh "
                           f"(python3 -m pip install paramiko asyncssh): {r.stderr.strip()[-300:]}")
    p, a, py = r.stdout.split()
    return {"paramiko": p, "asyncssh": a, "python": py, "python_path": python}


def client_python() -> str:
    """The python3 with paramiko and asyncssh (scripts/test.sh may set GW_PYTHON to a venv's)."""
    return os.environ.get("GW_PYTHON") or sys.executable


def run_child(cmd: list[str], timeout: float, what: str) -> tuple[float, str]:
    """Runs cmd in its own process group; (wall seconds, stdout). BenchError on failure/timeout."""
    t0 = time.perf_counter()
    p = R.CLEANUP.add_proc(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            stdin=subprocess.DEVNULL, text=True, start_new_session=True))
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        R.stop_proc(p, grace=1.0)
        raise R.BenchError(f"{what}: no end after {timeout:.0f} s (killed)")
    finally:
        if p.poll() is not None:
            with contextlib.suppress(ValueError):
                R.CLEANUP.procs.remove(p)  # reaped: never signal its (reusable) process group again
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (err.strip() or out.strip()).splitlines()[-3:]
        raise R.BenchError(f"{what}: exit {p.returncode}: {' | '.join(tail)[-400:]}")
    return wall, out


def transfer(b, s, lib: str, op: str, src: str, dst: str, bs, mr, timeout: float, what: str) -> dict:
    cmd = [client_python(), str(Path(__file__).resolve()), "--_client", lib, op, str(s.port), s.user,
           str(b.client_key), src, dst]
    if bs:
        cmd += ["--block-size", str(bs)]
    if mr:
        cmd += ["--max-requests", str(mr)]
    wall, out = run_child(cmd, timeout, what)
    info = json.loads(out.strip().splitlines()[-1])
    info["wall"] = wall
    return info


# --------------------------------------------------------------------------
# part A: 256 MiB up and down


def part_transfers(b, cfg: dict) -> dict:
    size = cfg["w7_size"]
    src = b.local / "w7-src.bin"
    digest = R.make_random_file(src, size)
    res: dict = {"size": size, "clients": {}, "systems": {}}
    try:
        for label, lib, bs, mr in CLIENTS:
            tag = "w7-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
            cres = {s: {"up": [], "down": [], "cpu_up": [], "cpu_down": [], "failures": [], "limits": []}
                    for s in R.SYSTEMS}
            res["clients"][label] = {"lib": lib, "block_size": bs, "max_requests": mr, "runs": cres}
            gw = rc = None
            try:
                gw = b.start_gateway(25, tag)
                rc = b.start_rclone(None, tag)
                systems = {"direct": b.direct(), "gateway": gw, "rclone": rc}
                for r in range(cfg["runs"]):
                    for sname in R.order_for_run(r):
                        s = systems[sname]
                        out = cres[sname]
                        rel = f"{tag}-{sname}-r{r}.bin"
                        dl = b.local / "w7-dl.bin"
                        b.before_run(out)
                        try:
                            if not s.alive():
                                raise R.BenchError(f"{sname} is not running")
                            R.sync()
                            c0 = s.cpu()
                            up = transfer(b, s, lib, "put", str(src), s.path(rel), bs, mr, cfg["timeout"],
                                          f"{label} put to {sname}")
                            c1 = s.cpu()
                            R.sync()
                            down = transfer(b, s, lib, "get", s.path(rel), str(dl), bs, mr, cfg["timeout"],
                                            f"{label} get from {sname}")
                            c2 = s.cpu()
                            if R.sha256_file(dl) != digest:
                                raise R.BenchError(f"checksum mismatch after the round trip (run {r + 1})")
                            out["up"].append(up["seconds"])
                            out["down"].append(down["seconds"])
                            if "server_limits" in up:
                                out["limits"].append(up["server_limits"])
                            if c0 is not None:
                                out["cpu_up"].append(round(c1 - c0, 2))
                                out["cpu_down"].append(round(c2 - c1, 2))
                            R.log(f"   w7 {label} run {r + 1} {sname:8s} up {up['seconds']:6.2f} s  "
                                  f"down {down['seconds']:6.2f} s"
                                  + (f"  cpu {c1 - c0:.2f}/{c2 - c1:.2f} s" if c0 is not None else ""))
                        except R.BenchError as e:
                            out["failures"].append(str(e))
                            R.log(f"   w7 {label} run {r + 1} {sname}: FAILED: {e}")
                        finally:
                            R.rm_remote(b.sshd.remote / rel)
                            with contextlib.suppress(FileNotFoundError):
                                dl.unlink()
            finally:
                if gw:
                    res["systems"][f"gateway {label}"] = b.stop_system(gw)
                if rc:
                    res["systems"][f"rclone {label}"] = b.stop_system(rc)
    finally:
        src.unlink(missing_ok=True)
    return res


def part_probe(b, cfg: dict) -> dict:
    """AsyncSSH with 256 KiB blocks: which systems take it."""
    src = b.local / "w7-probe.bin"
    digest = R.make_random_file(src, 4 * MiB)
    res: dict = {"size": 4 * MiB, "block_size": 256 * KiB, "max_requests": 128, "systems": {}}
    gw = rc = None
    try:
        gw = b.start_gateway(25, "w7-probe")
        rc = b.start_rclone(None, "w7-probe")
        for sname, s in (("direct", b.direct()), ("gateway", gw), ("rclone", rc)):
            o = res["systems"][sname] = {}
            rel, dl = f"w7-probe-{sname}.bin", b.local / "w7-probe-dl.bin"
            try:
                for op, a, z in (("put", str(src), s.path(rel)), ("get", s.path(rel), str(dl))):
                    try:
                        transfer(b, s, "asyncssh", op, a, z, 256 * KiB, 128, 120, f"probe {op} {sname}")
                        o[op] = "ok"
                    except R.BenchError as e:
                        o[op] = "failed: " + str(e).split(": exit 1: ")[-1].split(" | ")[-1][:200]
                        if op == "put":  # nothing to get: put it with the 255 KiB blocks sshd takes
                            transfer(b, s, "asyncssh", "put", str(src), s.path(rel), 261_120, 128, 120, "probe re-put")
                if o.get("get") == "ok" and R.sha256_file(dl) != digest:
                    o["get"] = "checksum mismatch"
            except R.BenchError as e:
                o["error"] = str(e)
            finally:
                R.rm_remote(b.sshd.remote / rel)
                dl.unlink(missing_ok=True)
            R.log(f"   w7 probe 256 KiB blocks {sname:8s} {o}")
    finally:
        for s in (gw, rc):
            if s:
                b.stop_system(s)
        src.unlink(missing_ok=True)
    return res


# --------------------------------------------------------------------------
# part B: 10,000 reads held in flight


def write_offsets_file(path: Path, size: int) -> None:
    """Every 4-byte big-endian word is its own offset (what flow_client.py checks)."""
    import array

    with open(path, "wb") as f:
        step = 4 * MiB
        for start in range(0, size, step):
            a = array.array("I", range(start, min(size, start + step), 4))
            if sys.byteorder == "little":
                a.byteswap()
            f.write(a.tobytes())


def sshd_sessions(master: int, user: str) -> list[int]:
    out = []
    for pid in R.descendants(master):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmd.startswith(f"sshd: {user}@"):
                out.append(pid)
    return out


def hwm(pid: int) -> int | None:
    try:
        return R.proc_status_kib(pid, "VmHWM")
    except (OSError, R.BenchError):
        return None


class Sampler:
    """Every 50 ms: VmHWM/VmRSS of a fixed pid, or of sshd's session processes as they come and go."""

    def __init__(self, pid: int | None = None, sshd_master: int | None = None) -> None:
        self.pid, self.master = pid, sshd_master
        self.stop_ev = threading.Event()
        self.peak_rss = 0
        self.sessions: dict[int, dict] = {}
        self.t = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop_ev.is_set():
            if self.pid:
                with contextlib.suppress(OSError, R.BenchError):
                    self.peak_rss = max(self.peak_rss, R.proc_status_kib(self.pid, "VmRSS"))
            if self.master:
                for p in sshd_sessions(self.master, R.GWTEST_USER):
                    h = hwm(p)
                    if h is not None:
                        d = self.sessions.setdefault(p, {"first_hwm_kib": h})
                        d["hwm_kib"] = h
            self.stop_ev.wait(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.t.join(5)


def hold_once(b, cfg: dict, s, path: str, what: str) -> dict:
    cmd = [client_python(), str(FLOW_CLIENT), "hold", "127.0.0.1", str(s.port), s.user, str(b.client_key), path,
           "--reads", str(cfg["w7_reads"]), "--len", str(cfg["w7_read_len"]), "--size", str(cfg["w7_hold_size"]),
           "--pause", str(cfg["w7_pause"])]
    o: dict = {}
    if s.pid:
        time.sleep(0.3)
        o["hwm_before_kib"] = hwm(s.pid)
        o["rss_before_kib"] = R.proc_status_kib(s.pid, "VmRSS")
    with Sampler(pid=s.pid, sshd_master=None if s.pid else b.sshd.proc.pid) as smp:
        # flow_client.py exits 1 when a reply is wrong; run_child then raises with its JSON line.
        _, out = run_child(cmd, cfg["w7_hold_timeout"], what)
        if not s.pid:
            time.sleep(0.1)
    line = json.loads(out.strip().splitlines()[-1])
    o["client"] = line
    if line.get("bad"):
        raise R.BenchError(f"{what}: wrong replies: {line['bad'][:3]}")
    if s.pid:
        o["hwm_after_kib"] = hwm(s.pid)
        o["rss_peak_sampled_kib"] = smp.peak_rss
    else:
        if not smp.sessions:
            raise R.BenchError(f"{what}: never saw the `sshd: {R.GWTEST_USER}@...` session process")
        # The one that lived longest (there is one session per run).
        p, d = max(smp.sessions.items(), key=lambda kv: kv[1]["hwm_kib"])
        o["hwm_before_kib"] = d["first_hwm_kib"]
        o["hwm_after_kib"] = d["hwm_kib"]
        o["sshd_session_pid"] = p
    return o


def part_hold(b, cfg: dict) -> dict:
    size = cfg["w7_hold_size"]
    home = b.gw_dir / "data" / "bench"
    home.mkdir(parents=True, exist_ok=True)
    local_file = home / "w7-big.bin"
    remote_file = b.sshd.remote / "w7-big.bin"
    write_offsets_file(local_file, size)
    write_offsets_file(remote_file, size)
    shutil.chown(remote_file, R.GWTEST_USER, R.GWTEST_USER)
    targets = (
        ("gateway, own storage", "gateway", "/w7-big.bin"),
        ("gateway, sshd mount", "gateway", None),  # None: the system's view of sshd's folder
        ("direct (sshd)", "direct", None),
        ("rclone serve sftp", "rclone", None),
    )
    res: dict = {"reads": cfg["w7_reads"], "read_len": cfg["w7_read_len"], "size": size,
                 "pause": cfg["w7_pause"], "targets": {}}
    try:
        for r in range(cfg["w7_hold_runs"]):
            for label, sname, path in targets:
                out = res["targets"].setdefault(label, {"runs": [], "failures": []})
                s = None
                try:
                    tag = f"w7-hold-{sname}-r{r}"
                    s = {"gateway": lambda: b.start_gateway(25, tag), "rclone": lambda: b.start_rclone(None, tag),
                         "direct": b.direct}[sname]()
                    o = hold_once(b, cfg, s, path or s.path(remote_file.name), f"hold {label}")
                    out["runs"].append(o)
                    R.log(f"   w7 hold {label:22s} run {r + 1}: VmHWM {R.mib(o['hwm_before_kib'])} -> "
                          f"{R.mib(o['hwm_after_kib'])}; client {o['client'].get('elapsed_s')} s")
                except R.BenchError as e:
                    out["failures"].append(str(e))
                    R.log(f"   w7 hold {label} run {r + 1}: FAILED: {e}")
                finally:
                    if s is not None and s.proc is not None:
                        out.setdefault("systems", []).append(b.stop_system(s))
    finally:
        local_file.unlink(missing_ok=True)
        remote_file.unlink(missing_ok=True)
    return res


# --------------------------------------------------------------------------
# the workload and its report


def workload7(b, cfg: dict) -> dict:
    cfg = dict(cfg)
    quick = cfg["quick"]
    cfg.setdefault("w7_size", 8 * MiB if quick else 256 * MiB)
    cfg.setdefault("w7_reads", 500 if quick else 10_000)
    cfg.setdefault("w7_read_len", 32 * KiB)
    cfg.setdefault("w7_hold_size", 4 * MiB if quick else 64 * MiB)
    cfg.setdefault("w7_pause", 1.0 if quick else 5.0)
    cfg.setdefault("w7_hold_runs", cfg["runs"])
    cfg.setdefault("w7_hold_timeout", 60 if quick else 300)
    cfg.setdefault("w7_parts", "transfers,hold")
    if not FLOW_CLIENT.is_file():
        raise R.BenchError(f"no {FLOW_CLIENT}")
    res: dict = {"versions": client_versions(client_python()),
                 "rclone": R.sh([R.RCLONE, "version"]).stdout.splitlines()[0],
                 "runs": cfg["runs"]}
    res["load"] = b.wait_quiet("workload 7")
    parts = cfg["w7_parts"].split(",")
    if "transfers" in parts:
        res["probe"] = part_probe(b, cfg)
        res["transfers"] = part_transfers(b, cfg)
    if "hold" in parts:
        res["hold"] = part_hold(b, cfg)
    return res


def failed(res: dict) -> bool:
    t = res.get("transfers", {})
    h = res.get("hold", {})
    return (any(c["runs"][s]["failures"] for c in t.get("clients", {}).values() for s in R.SYSTEMS)
            or any(x["failures"] for x in h.get("targets", {}).values()))


def _peak(systems: dict, key: str):
    v = systems.get(key, {})
    return "DIED" if "died" in v else R.mib(v.get("hwm_kib"))


def report(res: dict) -> list[str]:
    """The markdown section of workload 7."""
    v = res["versions"]
    L = [f"## Workload 7: paramiko and AsyncSSH through the gateway; 10,000 reads held in flight (issue 19)", ""]
    L += [R.load_line(res["load"], [c["runs"] for c in res.get("transfers", {}).get("clients", {}).values()]), "",
          f"Clients: paramiko {v['paramiko']} and AsyncSSH {v['asyncssh']} on Python {v['python']}, "
          f"each transfer a process of its own (`bench/clients_workload.py --_client`); rclone: {res['rclone']}. "
          "Times are measured inside the client from `connect` to the end of `close` (Python's start and "
          "imports excluded): median (min–max) seconds.", ""]
    t = res.get("transfers")
    if t:
        mib_ = t["size"] // MiB
        L += [f"### One {mib_} MiB file: `put`, then `get` of what was put (sha256 compared)", "",
              "paramiko: `SFTPClient.put` / `get` with their defaults (32 KiB writes, pipelined; `get` prefetches "
              f"the whole file: {t['size'] // (32 * KiB)} reads of 32 KiB sent at once). AsyncSSH: `put` / `get` with "
              "`block_size=261120` (255 KiB, the most sshd allows), `max_requests=128`, and with its defaults (block size = the server's "
              "`limits@openssh.com` read/write length, max_requests = 4 MiB / block size, between 16 and 128).", "",
              "| client | direction | direct | gateway | rclone | gateway/direct | gateway/rclone | gateway CPU-s | rclone CPU-s |",
              "|---|---|---|---|---|---|---|---|---|"]
        for label, c in t["clients"].items():
            runs = c["runs"]
            for d, dl in (("up", "put"), ("down", "get")):
                g, rc, di = R.med(runs["gateway"][d]), R.med(runs["rclone"][d]), R.med(runs["direct"][d])
                L.append(f"| {label} | {dl} | {R.mmm(runs['direct'][d])} | {R.mmm(runs['gateway'][d])} "
                         f"| {R.mmm(runs['rclone'][d])} | {R.ratio(g, di)} | {R.ratio(g, rc)} "
                         f"| {R.fmt_s(R.med(runs['gateway']['cpu_' + d]))} | {R.fmt_s(R.med(runs['rclone']['cpu_' + d]))} |")
        L += ["", "Peak RSS (VmHWM) of the proxies, started afresh for each client: "
              + "; ".join(f"{label}: gateway {_peak(t['systems'], 'gateway ' + label)}, "
                          f"rclone {_peak(t['systems'], 'rclone ' + label)}" for label in t["clients"]) + "."]
        lims = {}
        for label, c in t["clients"].items():
            for sname in R.SYSTEMS:
                for lim in c["runs"][sname].get("limits", [])[:1]:
                    lims[sname] = lim
        if lims:
            L += ["", "Read/write length each server advertises in `limits@openssh.com` (what AsyncSSH's "
                  "defaults follow): " + ", ".join(
                      f"{s} {x['max_read_len']}/{x['max_write_len']}"
                      + (" (none advertised: AsyncSSH's 16 KiB fallback)" if x["max_read_len"] == 16384 else "")
                      for s, x in lims.items()) + " bytes."]
        pr = res.get("probe")
        if pr:
            L += ["", "Probe, AsyncSSH with `block_size=262144` (256 KiB), `max_requests=128`, a 4 MiB file, once: "
                  + "; ".join(f"{s} put {x.get('put', '—')}, get {x.get('get', '—')}" + (f" ({x['error']})" if "error" in x else "")
                              for s, x in pr["systems"].items()) + "."]
        L.append("")
        for label, c in t["clients"].items():
            for sname in R.SYSTEMS:
                L += [f"- **FAILED** ({label}, {sname}): {f}" for f in c["runs"][sname]["failures"]]
        probs = [(k, x) for k, x in t["systems"].items() if x.get("log_problems")]
        L += [f"- {k} logged {x['log_problems']} warning/error line(s); first: `{x['log_samples'][0][:220]}`"
              for k, x in probs]
        L.append("")
    h = res.get("hold")
    if h:
        L += [f"### {h['reads']:,} reads of {h['read_len'] // KiB} KiB in flight from one client", "",
              f"`tests/flow/flow_client.py hold`: one paramiko connection sends {h['reads']:,} raw SFTP READs "
              f"({h['reads'] * h['read_len'] / MiB:.0f} MiB asked for, cycling through a {h['size'] // MiB} MiB "
              f"file whose every 4-byte word is its offset) in one go, reads nothing for {h['pause']:g} s (paramiko "
              "stops adjusting the SSH window), then reads every reply and checks ids, lengths and content. "
              "A fresh gateway / rclone for every run; VmHWM read just before the client connects and just "
              "after it exits. For sshd, the session process `sshd: gwtest@internal-sftp` (sampled every "
              "50 ms while it lives: \"before\" is its first sample, after login).", "",
              "| target | process | VmHWM before | VmHWM after | growth | client's time (send, hold, read all) | replies checked |",
              "|---|---|---|---|---|---|---|"]
        for label, x in h["targets"].items():
            runs = x["runs"]
            proc = "sshd session" if label.startswith("direct") else label.split(",")[0].split()[0]
            if not runs:
                L.append(f"| {label} | {proc} | failed | | | | |")
                continue
            bef = [o["hwm_before_kib"] / 1024 for o in runs]
            aft = [o["hwm_after_kib"] / 1024 for o in runs]
            gro = [a - b_ for a, b_ in zip(aft, bef)]
            el = [o["client"]["elapsed_s"] for o in runs]
            L.append(f"| {label} | {proc} | {R.mmm(bef)} MiB | {R.mmm(aft)} MiB | {R.mmm(gro)} MiB | {R.mmm(el)} s "
                     f"| {len(runs)} of {len(runs) + len(x['failures'])} runs all right |")
        L.append("")
        for label, x in h["targets"].items():
            L += [f"- **FAILED** ({label}): {f}" for f in x["failures"]]
        L.append("")
    return L


# --------------------------------------------------------------------------
# running on its own


def write_section(out: Path, section: str) -> None:
    """Puts the section into `out`: replaces an earlier one between the markers, else goes before
    `## Targets` (or at the end); the rest of the file is kept as it is."""
    block = f"{SECTION_BEGIN}\n{section.rstrip()}\n{SECTION_END}\n"
    text = out.read_text() if out.exists() else ""
    if SECTION_BEGIN in text and SECTION_END in text:
        a = text.index(SECTION_BEGIN)
        z = text.index(SECTION_END) + len(SECTION_END)
        text = text[:a] + block.rstrip("\n") + text[z:]
    elif "\n## Targets" in text:
        i = text.index("\n## Targets") + 1
        text = text[:i] + block + "\n" + text[i:]
    else:
        text = text + ("\n" if text and not text.endswith("\n\n") else "") + block
    out.write_text(text)


def standalone() -> int:
    global R
    sys.path.insert(0, str(HERE))
    import run as R  # noqa: F811 (bench/run.py as a module: its helpers, its cleanup)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 run; report to a temp file; exit 1 on any failure")
    ap.add_argument("--out", type=Path, help="file to put the section in (default bench/RESULTS.md, quick: a temp file)")
    ap.add_argument("--gateway", type=Path, help="gateway binary to use (implies --no-build)")
    ap.add_argument("--gateway-source", help="what the --gateway binary was built from, for the report "
                    "(default: this checkout's commit and whether it has uncommitted changes)")
    ap.add_argument("--debug", action="store_true", help="use (and build) target/debug/gateway")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build")
    ap.add_argument("--runs", type=int, help="runs per system and client (default 3, quick 1)")
    ap.add_argument("--parts", default="transfers,hold", help="transfers, hold or both (default)")
    ap.add_argument("--size-mib", type=int, help="file of part A (default 256, quick 8)")
    ap.add_argument("--hold-runs", type=int, help="runs of part B (default: --runs)")
    ap.add_argument("--timeout", type=float, help="seconds one transfer may take before it is killed and "
                    "counted as failed (default 900, quick 60)")
    ap.add_argument("--reads", type=int, help="reads held in flight in part B (default 10000, quick 500)")
    ap.add_argument("--data-dir", type=Path, help="folder for every file of the run (default /dev/shm when it has 8 GiB free)")
    ap.add_argument("--max-wait", type=float, help="seconds to wait for other CPU load to go before starting (default 180, quick 0)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root: the benchmark starts its own sshd", file=sys.stderr)
        return 2
    quick = args.quick
    cfg = {"quick": quick, "runs": args.runs or (1 if quick else 3),
           "timeout": args.timeout or (60 if quick else 900),
           "w7_parts": args.parts}
    if args.size_mib:
        cfg["w7_size"] = args.size_mib * MiB
    if args.reads:
        cfg["w7_reads"] = args.reads
    if args.hold_runs:
        cfg["w7_hold_runs"] = args.hold_runs
    args.max_wait = args.max_wait if args.max_wait is not None else (0 if quick else 180)
    args.max_wait_run = 0 if quick else min(args.max_wait, 20)
    R.MAX_WAIT_RUN[0] = args.max_wait_run
    if args.gateway:
        args.gateway_bin = args.gateway.resolve()
        args.no_build = True
    else:
        args.gateway_bin = REPO / "target" / ("debug" if args.debug else "release") / "gateway"
    out = args.out or (Path(tempfile.gettempdir()) / "gw-bench-clients-quick.md" if quick else HERE / "RESULTS.md")
    cmdline = "python3 bench/clients_workload.py" + ("" if len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:]))

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    durations: dict = {}
    try:
        if not args.no_build:
            R.build(args, durations)
        if not args.gateway_bin.is_file():
            raise R.BenchError(f"no gateway binary at {args.gateway_bin} (build it, or pass --gateway)")
        with R.stage("setup: sshd, keys", durations):
            R.ensure_test_user()
            b = R.Bench(args)
            b.sshd.start()
            R.log(f"sshd on port {b.sshd.port} (pid {b.sshd.proc.pid})")
            first = b.start_gateway(25, "first-start")  # creates the host keys, untimed
            b.stop_system(first)
        machine = R.machine_info()
        if args.gateway_source:
            machine["gateway_commit"] = args.gateway_source
        with R.stage("workload 7", durations):
            res = workload7(b, cfg)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        mode = ("quick: tiny sizes, the figures mean nothing" if quick else
                f"{cfg['runs']} runs per system and client, alternating direct / gateway / rclone run by run")
        binary = args.gateway_bin.relative_to(REPO) if args.gateway_bin.is_relative_to(REPO) else args.gateway_bin
        head = [f"Generated by `{cmdline}` on {now} ({mode}), "
                "separately from the run that produced the sections above, on the same machine: "
                f"{machine['cpu']}, {machine['nproc']} cores, {machine['mem']}, kernel {machine['kernel']}; "
                f"sshd: openssh-server {machine['openssh_server']} on 127.0.0.1 (`internal-sftp`); "
                f"gateway: git {machine['gateway_commit']}, `{binary}`, "
                f"{machine['rustc']}; files in `{b.data_dir}`. Stage durations: "
                + ", ".join(f"{k} {v_:.0f} s" for k, v_ in durations.items()) + ".", ""]
        sec = report(res)
        sec = sec[:2] + head + sec[2:]
        sec += ["<details><summary>Raw figures of workload 7 (JSON)</summary>", "", "```json",
                json.dumps(res, indent=1, default=str), "```", "", "</details>", ""]
        write_section(out, "\n".join(sec))
        R.log(f"section written to {out}")
        bad = failed(res)
        if bad:
            R.log("SOME RUNS FAILED: see the report")
        return 1 if bad else 0
    except R.BenchError as e:
        R.log(f"FAILED: {e}")
        return 1
    except KeyboardInterrupt as e:
        R.log(f"interrupted ({e}); cleaning up")
        return 130
    finally:
        with R.stage("cleanup"):
            R.CLEANUP.run()
        R.log(f"total {time.perf_counter() - R.T_START:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_client":
        sys.exit(client_main(sys.argv[2:]))
    sys.exit(standalone())
