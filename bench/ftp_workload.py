"""Workload 5: one large file through an FTP remote (vsftpd on loopback).

Three systems, alternating run by run like the SFTP workloads:
  direct   curl straight to vsftpd (the one-hop limit)
  gateway  OpenSSH sftp -> gateway (mount on a kind = "ftp" remote) -> vsftpd
  rclone   OpenSSH sftp -> rclone serve sftp (ftp backend) -> vsftpd
each in plain FTP and in explicit FTPS (AUTH TLS, vsftpd with require_ssl_reuse).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import __main__ as R  # bench/run.py, which imports this module
import large_file as LF

FTP_PASSWORD = "gwtest-Pass-123"  # scripts/test.sh gives the gwtest account this password
MODES = ("plain", "tls")


class Vsftpd:
    """vsftpd in the foreground on 127.0.0.1, serving the sshd remote folder as gwtest's root."""

    def __init__(self, root: Path, served: Path) -> None:
        self.dir = root / "vsftpd"
        self.dir.mkdir()
        self.served = served
        self.port = R.free_port()
        # A small passive range from a free port up (collisions are unlikely on loopback).
        first = R.free_port()
        self.pasv = (first, min(first + 40, 65535))
        self.proc: subprocess.Popen | None = None
        self.mode = "plain"
        empty = self.dir / "empty"
        empty.mkdir()
        os.chmod(empty, 0o555)
        (self.dir / "user_list").write_text(f"{R.GWTEST_USER}\n")
        self.ca = self.dir / "ca.pem"
        self._certificates()

    def _certificates(self) -> None:
        d = self.dir
        run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=bench CA", "-keyout", str(d / "ca.key"), "-out", str(self.ca),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
        (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(self.ca), "-CAkey",
            str(d / "ca.key"), "-CAcreateserial", "-days", "30", "-extfile", str(d / "ext"),
            "-out", str(d / "server.pem"))

    def config(self) -> Path:
        d = self.dir
        lines = [
            "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", f"listen_port={self.port}",
            "background=NO", "seccomp_sandbox=NO", "anonymous_enable=NO", "local_enable=YES",
            "write_enable=YES", "local_umask=022", "pasv_enable=YES", "pasv_address=127.0.0.1",
            f"pasv_min_port={self.pasv[0]}", f"pasv_max_port={self.pasv[1]}",
            f"secure_chroot_dir={d / 'empty'}", "userlist_enable=YES", "userlist_deny=NO",
            f"userlist_file={d / 'user_list'}", "chroot_local_user=YES", "allow_writeable_chroot=YES",
            f"local_root={self.served}", "pam_service_name=vsftpd", "max_clients=200", "max_per_ip=200",
            "xferlog_enable=NO",
        ]
        if self.mode == "tls":
            lines += [
                "ssl_enable=YES", f"rsa_cert_file={d / 'server.pem'}",
                f"rsa_private_key_file={d / 'server.key'}", "ssl_ciphers=HIGH",
                "force_local_logins_ssl=YES", "force_local_data_ssl=YES", "require_ssl_reuse=YES",
            ]
        conf = d / f"vsftpd-{self.mode}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, mode: str) -> None:
        self.stop()
        self.mode = mode
        conf = self.config()
        logf = open(self.dir / f"vsftpd-{mode}.log", "ab")
        self.proc = R.CLEANUP.add_proc(subprocess.Popen(
            ["/usr/sbin/vsftpd", str(conf)], stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
            start_new_session=True))
        R.wait_port(self.port, 20, self.proc, banner=b"220")

    def stop(self) -> None:
        if self.proc is not None:
            # vsftpd forks a process pair per session: take the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.proc = None

    def version(self) -> str:
        r = subprocess.run(["/usr/sbin/vsftpd", "-v"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "vsftpd"


def curl_cmd(v: Vsftpd, mode: str) -> list[str]:
    cmd = ["curl", "-sS", "--fail", "--ftp-pasv", "--user", f"{R.GWTEST_USER}:{FTP_PASSWORD}"]
    if mode == "tls":
        # OpenSSL clients lose uploads to vsftpd 3.0.3 over TLS 1.3 (see tests/src/ftpd.rs).
        cmd += ["--ssl-reqd", "--cacert", str(v.ca), "--tls-max", "1.2"]
    return cmd


def gateway_config(b: R.Bench, v: Vsftpd, mode: str) -> Path:
    tls = f'tls = "require"\nca_file = "{v.ca}"' if mode == "tls" else 'tls = "never"'
    return b.write_gateway_config(f"gateway-ftp-{mode}.toml", f"""
kind = "ftp"
host = "127.0.0.1"
port = {v.port}
username = "{R.GWTEST_USER}"
password = "{FTP_PASSWORD}"
{tls}
max_connections = 25
""")


def rclone_conf(b: R.Bench, v: Vsftpd, mode: str) -> Path:
    obscured = subprocess.run([R.RCLONE, "obscure", FTP_PASSWORD], capture_output=True, text=True,
                              check=True).stdout.strip()
    conf = b.rc_dir / f"rclone-ftp-{mode}.conf"
    extra = "explicit_tls = true\nno_check_certificate = true\ndisable_tls13 = true\n" if mode == "tls" else ""
    conf.write_text(
        f"""[bench]
type = ftp
host = 127.0.0.1
port = {v.port}
user = {R.GWTEST_USER}
pass = {obscured}
{extra}"""
    )
    return conf


def direct_transfer(v: Vsftpd, mode: str, src: Path, rel: str, dl: Path, timeout: float) -> tuple[float, float]:
    url = f"ftp://127.0.0.1:{v.port}/{rel}"
    t0 = time.perf_counter()
    r = subprocess.run(curl_cmd(v, mode) + ["-T", str(src), url], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    up = time.perf_counter() - t0
    if r.returncode != 0:
        raise R.BenchError(f"curl upload exit {r.returncode}: {r.stderr.strip()[-300:]}")
    R.sync()
    t0 = time.perf_counter()
    r = subprocess.run(curl_cmd(v, mode) + ["-o", str(dl), url], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    down = time.perf_counter() - t0
    if r.returncode != 0:
        raise R.BenchError(f"curl download exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return up, down


def workload5(b: R.Bench, cfg: dict) -> dict:
    size = cfg["w1_size"]
    src = b.local / "w5-src.bin"
    digest = R.make_random_file(src, size)
    served = b.sshd.remote
    v = Vsftpd(b.root, served)
    res: dict = {"size": size, "modes": {}, "systems": {}, "vsftpd": v.version(),
                 "curl": " ".join(subprocess.run(["curl", "--version"], capture_output=True,
                                                   text=True).stdout.split()[:2])}
    res["load"] = b.wait_quiet("workload 5")
    try:
        for mode in MODES:
            v.start(mode)
            gw = rc = None
            try:
                gw = b.start_gateway_with(gateway_config(b, v, mode), f"w5-{mode}")
                rc = b.serve_rclone("bench:", rclone_conf(b, v, mode), f"w5-{mode}", ["--vfs-read-chunk-size", "0"])
                res["modes"][mode] = LF.timed_runs(
                    b, cfg, f"w5-{mode}", {"gateway": gw, "rclone": rc}, src, digest,
                    lambda s_, rel, dl, t: direct_transfer(v, mode, s_, rel, dl, t),
                    lambda rel: R.rm_remote(served / rel))
            finally:
                if gw:
                    res["systems"][f"gateway-{mode}"] = b.stop_system(gw)
                if rc:
                    res["systems"][f"rclone-{mode}"] = b.stop_system(rc)
    finally:
        v.stop()
        src.unlink(missing_ok=True)
    return res


def report(res: dict) -> list[str]:
    """The markdown section of workload 5."""
    mib = res["size"] // R.MiB
    L = [f"## Workload 5: one {mib} MiB file through an FTP remote (vsftpd), upload then download", "",
         R.load_line(res["load"], list(res["modes"].values())), "",
         f"Server: {res['vsftpd']} on 127.0.0.1 (passive mode; TLS: explicit AUTH TLS with "
         "`require_ssl_reuse=YES`). direct = `curl` straight to vsftpd "
         f"({res['curl']}; `--tls-max 1.2`, since OpenSSL clients lose uploads to vsftpd 3.0.3 over TLS 1.3); "
         "gateway = a `kind = \"ftp\"` mount (`tls = \"never\"` / `\"require\"` with the test CA); "
         "rclone = `rclone serve sftp` on its ftp backend (`explicit_tls`, `disable_tls13`, "
         "`no_check_certificate`, `--vfs-read-chunk-size 0`). The SFTP hop from the client uses "
         "OpenSSH's default cipher for both proxies.", "",
         "| FTP | direction | direct (curl) | gateway | rclone | gateway/rclone | gateway/direct | gateway CPU-s/GiB | rclone CPU-s/GiB |",
         "|---|---|---|---|---|---|---|---|---|"]
    for mode, m in res["modes"].items():
        L += LF.table_rows(mode, m, res["size"])
    L.append("")
    L += LF.peaks(res["systems"])
    for mode, m in res["modes"].items():
        L += LF.failures(mode, m)
    L.append("")
    return L
