"""One large file up and down through a remote, for every system, alternating run by run.

Shared by the FTP (5) and S3 (6) workloads: the caller starts the proxies for one
remote set-up and says how a direct transfer is made; this module times the runs,
checks the checksum and formats the table rows.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Callable

import __main__ as R  # bench/run.py

# direct(src, rel, dl, timeout) -> (upload seconds, download seconds)
Direct = Callable[[Path, str, Path, float], "tuple[float, float]"]


def timed_runs(b, cfg: dict, tag: str, systems: dict, src: Path, digest: str,
               direct: Direct, remove: Callable[[str], None]) -> dict:
    """Runs `cfg['runs']` rounds of upload + download for direct, gateway and rclone."""
    res = {s: {"up": [], "down": [], "cpu_up": [], "cpu_down": [], "failures": []} for s in R.SYSTEMS}
    for r in range(cfg["runs"]):
        for sname in R.order_for_run(r):
            out = res[sname]
            rel = f"{tag}-{sname}-r{r}.bin"
            dl = b.local / f"{tag}-dl.bin"
            b.before_run(out)
            try:
                R.sync()
                c0 = c1 = c2 = None
                if sname == "direct":
                    dt, dt2 = direct(src, rel, dl, cfg["timeout"])
                else:
                    s = systems[sname]
                    if not s.alive():
                        raise R.BenchError(f"{sname} is not running")
                    c0 = s.cpu()
                    dt, _ = b.sftp(s, [f"put {src} {s.path(rel)}"], None, cfg["timeout"], f"{tag}-up")
                    c1 = s.cpu()
                    R.sync()
                    dt2, _ = b.sftp(s, [f"get {s.path(rel)} {dl}"], None, cfg["timeout"], f"{tag}-down")
                    c2 = s.cpu()
                if R.sha256_file(dl) != digest:
                    raise R.BenchError(f"checksum mismatch after download (run {r + 1})")
                out["up"].append(dt)
                out["down"].append(dt2)
                if c0 is not None:
                    out["cpu_up"].append(c1 - c0)
                    out["cpu_down"].append(c2 - c1)
                R.log(f"   {tag} run {r + 1} {sname:8s} up {dt:6.2f} s  down {dt2:6.2f} s"
                      + (f"  cpu {c1 - c0:.2f}/{c2 - c1:.2f} s" if c0 is not None else ""))
            except (R.BenchError, subprocess.TimeoutExpired) as e:
                out["failures"].append(str(e))
                R.log(f"   {tag} run {r + 1} {sname}: FAILED: {e}")
            finally:
                with contextlib.suppress(Exception):
                    remove(rel)
                with contextlib.suppress(FileNotFoundError):
                    dl.unlink()
    return res


def table_rows(label: str, res: dict, size: int) -> list[str]:
    """Rows `| label | direction | direct | gateway | rclone | ratios | CPU-s/GiB |`."""
    gib = size / R.GiB
    rows = []
    for d, c in (("up", "cpu_up"), ("down", "cpu_down")):
        g, rc, di = res["gateway"][d], res["rclone"][d], res["direct"][d]
        gc, rcc = R.med(res["gateway"][c]), R.med(res["rclone"][c])
        cpu = (f"{gc / gib:.2f} | {rcc / gib:.2f}" if gc is not None and rcc is not None else "— | —")
        rows.append(f"| {label} | {'upload' if d == 'up' else 'download'} | {R.mmm(di)} | {R.mmm(g)} | {R.mmm(rc)} "
                    f"| {R.ratio(R.med(g), R.med(rc))} | {R.ratio(R.med(g), R.med(di))} | {cpu} |")
    return rows


def failures(label: str, res: dict) -> list[str]:
    return [f"- **FAILED** ({label}, {s}): {f}" for s in R.SYSTEMS for f in res[s]["failures"]]


def peaks(systems: dict) -> list[str]:
    found = [f"{name} {R.mib(info['hwm_kib'])}" for name, info in systems.items() if "hwm_kib" in info]
    return ["Peak RSS (VmHWM) per process: " + ", ".join(found) + ".", ""] if found else []
