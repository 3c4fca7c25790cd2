#!/usr/bin/env python3
"""AsyncSSH as an SFTP client of the gateway, one operation per run.

Called by tests/tests/clients.rs (through tests/src/clients.rs):

    asyncssh_client.py --port P --user U --key KEY [--block-size N]
        [--max-requests N] [--preserve] COMMAND ARGS...

Commands:
    version                 print AsyncSSH's version
    put LOCAL REMOTE        SFTPClient.put
    get REMOTE LOCAL        SFTPClient.get
    mget PATTERN LOCALDIR   SFTPClient.mget (a glob of the server's tree)

--block-size and --max-requests are handed to each transfer (AsyncSSH's
defaults when absent); --preserve keeps times (and permissions). Any
failure exits 1 with the exception on standard error.
"""

import argparse
import asyncio
import sys
import warnings

warnings.filterwarnings("ignore")

import asyncssh  # noqa: E402


async def run(args):
    opts = {}
    if args.block_size:
        opts["block_size"] = args.block_size
    if args.max_requests:
        opts["max_requests"] = args.max_requests
    if args.preserve:
        opts["preserve"] = True
    async with asyncssh.connect(
        args.host,
        port=args.port,
        username=args.user,
        client_keys=[args.key],
        known_hosts=None,
        agent_path=None,
        connect_timeout=30,
    ) as conn:
        async with conn.start_sftp_client() as sftp:
            a = args.args
            if args.command == "put":
                await sftp.put(a[0], a[1], **opts)
            elif args.command == "get":
                await sftp.get(a[0], a[1], **opts)
            elif args.command == "mget":
                await sftp.mget(a[0], a[1], **opts)
            else:
                raise SystemExit(f"unknown command {args.command}")
            print(f"{args.command} done")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=22)
    ap.add_argument("--user", default="")
    ap.add_argument("--key", default=None)
    ap.add_argument("--block-size", type=int, default=0)
    ap.add_argument("--max-requests", type=int, default=0)
    ap.add_argument("--preserve", action="store_true")
    ap.add_argument("command")
    ap.add_argument("args", nargs="*")
    args = ap.parse_args()
    if args.command == "version":
        print(f"asyncssh {asyncssh.__version__}")
        return 0
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
