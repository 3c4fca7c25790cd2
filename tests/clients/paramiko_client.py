#!/usr/bin/env python3
"""paramiko as an SFTP client of the gateway, one operation per run.

Called by tests/tests/clients.rs (through tests/src/clients.rs):

    paramiko_client.py --port P --user U --key KEY COMMAND ARGS...

Commands:
    version                     print paramiko's version
    put LOCAL REMOTE            SFTPClient.put (pipelined writes, confirm=True)
    get REMOTE LOCAL            SFTPClient.get (default prefetch)
    getfo REMOTE                SFTPClient.getfo into a hashing sink (default
                                prefetch); prints "sha256 HEX SIZE"
    readv REMOTE LOCAL N SEED   SFTPFile.readv of N random ranges of REMOTE,
                                each compared with the same range of LOCAL;
                                prints "readv ok RANGES BYTES"
    listdir_attr REMOTE         prints one "NAME<TAB>SIZE" line per entry
    utime REMOTE MTIME          SFTPClient.utime((MTIME, MTIME)), then stat;
                                prints "mtime SECONDS"
    write_beyond REMOTE OFFSET  opens REMOTE for writing, writes 4 bytes,
                                seeks to OFFSET and writes 10 more; prints
                                "write beyond: refused: ERROR" when that
                                write raises, else "write beyond: accepted",
                                then "close: ok" or "close: failed: ERROR"

Any failure exits 1 with the exception on standard error.
"""

import argparse
import hashlib
import random
import sys
import warnings

warnings.filterwarnings("ignore")

import paramiko  # noqa: E402


def connect(args):
    client = paramiko.SSHClient()
    # The test's gateway has a fresh host key each run; the tests check
    # transfers, not host key pinning.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(
        args.host,
        port=args.port,
        username=args.user,
        key_filename=args.key,
        look_for_keys=False,
        allow_agent=False,
        timeout=30,
        banner_timeout=30,
        auth_timeout=30,
    )
    return client, client.open_sftp()


class HashSink:
    """A writable file object that only hashes and counts what it gets."""

    def __init__(self):
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=22)
    ap.add_argument("--user", default="")
    ap.add_argument("--key", default=None)
    ap.add_argument("command")
    ap.add_argument("args", nargs="*")
    args = ap.parse_args()

    if args.command == "version":
        print(f"paramiko {paramiko.__version__}")
        return 0

    client, sftp = connect(args)
    try:
        a = args.args
        if args.command == "put":
            attrs = sftp.put(a[0], a[1], confirm=True)
            print(f"put {attrs.st_size} bytes")
        elif args.command == "get":
            sftp.get(a[0], a[1])
            print("get done")
        elif args.command == "getfo":
            sink = HashSink()
            n = sftp.getfo(a[0], sink)
            print(f"sha256 {sink.hash.hexdigest()} {sink.size} (getfo returned {n})")
        elif args.command == "readv":
            local, count, seed = a[1], int(a[2]), int(a[3])
            with open(local, "rb") as f:
                expected = f.read()
            rng = random.Random(seed)
            size = len(expected)
            ranges = []
            for _ in range(count):
                off = rng.randrange(0, max(size, 1))
                length = rng.randrange(1, 200_000)
                ranges.append((off, min(length, size - off)))
            with sftp.open(a[0], "rb") as rf:
                got = list(rf.readv(ranges))
            if len(got) != len(ranges):
                raise SystemExit(f"readv returned {len(got)} chunks for {len(ranges)} ranges")
            total = 0
            for (off, length), data in zip(ranges, got):
                if data != expected[off:off + length]:
                    raise SystemExit(
                        f"readv range ({off}, {length}) differs: got {len(data)} bytes"
                    )
                total += length
            print(f"readv ok {len(ranges)} {total}")
        elif args.command == "listdir_attr":
            for e in sftp.listdir_attr(a[0]):
                print(f"{e.filename}\t{e.st_size}")
        elif args.command == "write_beyond":
            f = sftp.open(a[0], "wb")
            f.write(b"head")
            f.flush()
            f.seek(int(a[1]))
            try:
                f.write(b"x" * 10)
                f.flush()
                print("write beyond: accepted")
            except IOError as e:
                print(f"write beyond: refused: {e}")
            try:
                f.close()
                print("close: ok")
            except IOError as e:
                print(f"close: failed: {e}")
        elif args.command == "utime":
            mtime = int(a[1])
            sftp.utime(a[0], (mtime, mtime))
            print(f"mtime {sftp.stat(a[0]).st_mtime}")
        else:
            print(f"unknown command {args.command}", file=sys.stderr)
            return 2
    finally:
        sftp.close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
