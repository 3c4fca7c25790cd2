#!/usr/bin/env python3
"""A scripted SFTP client for the flow-control tests (tests/tests/sftp_flow.rs).

It speaks raw SFTP v3 over a paramiko SSH channel, so it can do what no
ordinary client does on purpose: send thousands of requests before reading
a reply, stop reading (paramiko adjusts the SSH window only as the program
reads, so the server's replies stop once the window is used up), resume,
or vanish with requests in flight.

Usage: flow_client.py MODE HOST PORT USER KEY PATH [options]
  MODE hold     send --reads READs, pause --pause seconds unread, then read
                and check every reply (ids in order, lengths, content of
                files made by the test: every 4-byte word is its offset)
  MODE leave    send --reads READs, then close the TCP socket at once
  MODE stall    send --reads READs and never read, keeping the SSH
                connection busy with SSH_MSG_IGNORE; report when the server
                ends the connection (or --limit seconds pass)
Prints one JSON line with what happened; exits 1 on any check failing.
"""

import argparse
import json
import socket
import struct
import sys
import time

import paramiko

FXP_INIT, FXP_VERSION, FXP_OPEN, FXP_CLOSE, FXP_READ = 1, 2, 3, 4, 5
FXP_STATUS, FXP_HANDLE, FXP_DATA = 101, 102, 103
FXF_READ = 0x1
FX_EOF = 1


def string(b):
    return struct.pack(">I", len(b)) + b


def packet(kind, body):
    return struct.pack(">IB", len(body) + 1, kind) + body


class Channel:
    def __init__(self, chan):
        self.chan = chan
        self.buf = b""

    def send(self, data):
        self.chan.sendall(data)

    def recv_exact(self, n):
        while len(self.buf) < n:
            chunk = self.chan.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the channel")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self):
        (length,) = struct.unpack(">I", self.recv_exact(4))
        body = self.recv_exact(length)
        return body[0], body[1:]


def connect(args):
    sock = socket.create_connection((args.host, args.port))
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=30)
    key = paramiko.PKey.from_path(args.key)
    transport.auth_publickey(args.user, key)
    chan = transport.open_session()
    chan.invoke_subsystem("sftp")
    ch = Channel(chan)
    ch.send(packet(FXP_INIT, struct.pack(">I", 3)))
    kind, _ = ch.reply()
    assert kind == FXP_VERSION, kind
    ch.send(packet(FXP_OPEN, struct.pack(">I", 1) + string(args.path.encode())
                   + struct.pack(">II", FXF_READ, 0)))
    kind, body = ch.reply()
    if kind != FXP_HANDLE:
        raise SystemExit(f"open {args.path} failed: {kind} {body!r}")
    (hlen,) = struct.unpack(">I", body[4:8])
    handle = body[8:8 + hlen]
    return sock, transport, ch, handle


def read_requests(handle, reads, length, size):
    out = []
    for i in range(reads):
        offset = (i * length) % size
        out.append(packet(FXP_READ, struct.pack(">I", 1000 + i) + string(handle)
                          + struct.pack(">QI", offset, length)))
    return b"".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["hold", "leave", "stall"])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("user")
    ap.add_argument("key")
    ap.add_argument("path")
    ap.add_argument("--reads", type=int, default=10000)
    ap.add_argument("--len", type=int, default=32768)
    ap.add_argument("--size", type=int, required=True, help="the file's size")
    ap.add_argument("--pause", type=float, default=5.0)
    ap.add_argument("--limit", type=float, default=60.0)
    args = ap.parse_args()

    sock, transport, ch, handle = connect(args)
    requests = read_requests(handle, args.reads, args.len, args.size)
    started = time.monotonic()
    ch.send(requests)
    sent_after = time.monotonic() - started
    result = {"mode": args.mode, "reads": args.reads, "sent_s": round(sent_after, 3)}

    if args.mode == "leave":
        # Vanish: no SSH disconnect, no channel close; the kernel resets.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        print(json.dumps(result))
        return 0

    if args.mode == "stall":
        # SSH_MSG_IGNORE every half second: the connection is not idle to
        # SSH, only the SFTP session makes no progress.
        while transport.is_active() and time.monotonic() - started < args.limit:
            try:
                transport.send_ignore()
            except Exception:
                break
            time.sleep(0.5)
        result["server_ended"] = not transport.is_active()
        result["after_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(result))
        return 0

    time.sleep(args.pause)
    bad = []
    for i in range(args.reads):
        kind, body = ch.reply()
        (rid,) = struct.unpack(">I", body[:4])
        if rid != 1000 + i:
            bad.append(f"reply {i} has id {rid}")
            break
        offset = (i * args.len) % args.size
        if kind == FXP_DATA:
            (dlen,) = struct.unpack(">I", body[4:8])
            data = body[8:8 + dlen]
            want = min(args.len, args.size - offset)
            if dlen != want:
                bad.append(f"read {i} at {offset}: {dlen} bytes, expected {want}")
            elif data[:4] != struct.pack(">I", offset & 0xFFFFFFFF):
                bad.append(f"read {i} at {offset}: wrong content")
        else:
            bad.append(f"read {i}: reply type {kind} {body[:80]!r}")
        if len(bad) > 5:
            break
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    result["bad"] = bad
    transport.close()
    print(json.dumps(result))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
