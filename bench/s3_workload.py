"""Workload 6: one large file through an S3 remote (s3s-fs on loopback).

  direct   `rclone copyto` straight to s3s-fs (an S3 client: the one-hop reference)
  gateway  OpenSSH sftp -> gateway (mount on a kind = "s3" remote) -> s3s-fs
  rclone   OpenSSH sftp -> rclone serve sftp (s3 backend) -> s3s-fs
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import __main__ as R  # bench/run.py, which imports this module
import large_file as LF

ACCESS_KEY = "benchaccesskey"
SECRET_KEY = "bench-Secret-Key-123"
BUCKET = "bench"
S3S_FS_DEFAULT = Path(__file__).resolve().parent.parent / "target" / "peers" / "s3s-fs" / "bin" / "s3s-fs"


def s3s_fs_bin() -> Path | None:
    """The s3s-fs binary the test command builds (GW_S3S_FS, or its default folder)."""
    env = os.environ.get("GW_S3S_FS")
    for p in ([Path(env)] if env else []) + [S3S_FS_DEFAULT]:
        if p.is_file():
            return p
    return None


class S3sFs:
    """s3s-fs in the foreground on 127.0.0.1 with one bucket."""

    def __init__(self, root: Path) -> None:
        self.bin = s3s_fs_bin()
        if self.bin is None:
            raise R.BenchError(f"no s3s-fs at {S3S_FS_DEFAULT}: run scripts/test.sh once (it builds it)")
        self.data = root / "s3s-fs"
        (self.data / BUCKET).mkdir(parents=True)
        self.port = R.free_port()
        self.log = root / "s3s-fs.log"
        env = dict(os.environ)
        env.pop("AWS_CA_BUNDLE", None)
        self.proc = R.CLEANUP.add_proc(subprocess.Popen(
            [str(self.bin), "--host", "127.0.0.1", "--port", str(self.port), "--access-key", ACCESS_KEY,
             "--secret-key", SECRET_KEY, str(self.data)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env))
        R.wait_port(self.port, 20, self.proc, banner=None)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def version(self) -> str:
        r = subprocess.run([str(self.bin), "--version"], capture_output=True, text=True)
        return r.stdout.strip() or "s3s-fs"

    def remove(self, key: str) -> None:
        R.rm_remote(self.data / BUCKET / key)

    def stop(self) -> None:
        R.stop_proc(self.proc)


def rclone_conf(b, server: S3sFs) -> Path:
    conf = b.rc_dir / "rclone-s3.conf"
    conf.write_text(
        f"""[bench]
type = s3
provider = Other
env_auth = false
access_key_id = {ACCESS_KEY}
secret_access_key = {SECRET_KEY}
region = us-east-1
endpoint = {server.endpoint}
force_path_style = true
no_check_bucket = true
"""
    )
    return conf


def gateway_config(b, server: S3sFs) -> Path:
    # GW_BENCH_S3_READ_AHEAD=N sets the remote's read_ahead (0: one
    # streaming GET, as before read-ahead), for before/after pairs.
    read_ahead = os.environ.get("GW_BENCH_S3_READ_AHEAD")
    extra = f"read_ahead = {int(read_ahead)}\n" if read_ahead else ""
    return b.write_gateway_config("gateway-s3.toml", f"""
kind = "s3"
endpoint = "{server.endpoint}"
bucket = "{BUCKET}"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
{extra}""")


def direct_transfer(env: dict, src: Path, rel: str, dl: Path, timeout: float) -> tuple[float, float]:
    def copy(a: str, z: str) -> float:
        t0 = time.perf_counter()
        r = subprocess.run([R.RCLONE, "copyto", a, z], capture_output=True, text=True, timeout=timeout,
                           env=env, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise R.BenchError(f"rclone copyto exit {r.returncode}: {r.stderr.strip()[-300:]}")
        return time.perf_counter() - t0

    up = copy(str(src), f"bench:{BUCKET}/{rel}")
    R.sync()
    return up, copy(f"bench:{BUCKET}/{rel}", str(dl))


def workload6(b, cfg: dict) -> dict:
    size = cfg["w1_size"]
    src = b.local / "w6-src.bin"
    digest = R.make_random_file(src, size)
    server = S3sFs(b.root)
    res: dict = {"size": size, "systems": {}, "server": server.version()}
    res["load"] = b.wait_quiet("workload 6")
    gw = rc = None
    try:
        conf = rclone_conf(b, server)
        env = dict(os.environ, RCLONE_CONFIG=str(conf))
        env.pop("AWS_CA_BUNDLE", None)
        gw = b.start_gateway_with(gateway_config(b, server), "w6")
        rc = b.serve_rclone(f"bench:{BUCKET}", conf, "w6", [])
        res["runs"] = LF.timed_runs(
            b, cfg, "w6", {"gateway": gw, "rclone": rc}, src, digest,
            lambda s_, rel, dl, t: direct_transfer(env, s_, rel, dl, t), server.remove)
    finally:
        if gw:
            res["systems"]["gateway"] = b.stop_system(gw)
        if rc:
            res["systems"]["rclone"] = b.stop_system(rc)
        server.stop()
        src.unlink(missing_ok=True)
        shutil.rmtree(server.data, ignore_errors=True)  # frees its 1 GiB objects on tmpfs now
    return res


def report(res: dict) -> list[str]:
    """The markdown section of workload 6."""
    mib = res["size"] // R.MiB
    L = [f"## Workload 6: one {mib} MiB file through an S3 remote (s3s-fs), upload then download", "",
         R.load_line(res["load"], [res["runs"]]), "",
         f"Server: {res['server']} on 127.0.0.1 (objects on the same tmpfs or disk as everything else). "
         "direct = `rclone copyto` straight to the server (rclone's S3 client: 5 MiB parts, 4 at once); "
         "gateway = a `kind = \"s3\"` mount (8 MiB parts, 2 in flight); rclone = `rclone serve sftp` on its s3 "
         "backend (no VFS cache). The SFTP hop from the client uses OpenSSH's default cipher for both proxies.", "",
         "| S3 | direction | direct (rclone copyto) | gateway | rclone | gateway/rclone | gateway/direct | gateway CPU-s/GiB | rclone CPU-s/GiB |",
         "|---|---|---|---|---|---|---|---|---|"]
    L += LF.table_rows("s3s-fs", res["runs"], res["size"])
    L.append("")
    L += LF.peaks(res["systems"])
    L += LF.failures("s3", res["runs"])
    L.append("")
    return L
