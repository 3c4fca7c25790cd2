"""A TCP relay that adds a fixed round-trip time, for the benchmark's WAN
rows (this kernel has no netem).

Every byte read from one side is released to the other side `rtt / 2`
later, in both directions. Up to `LINK_BUFFER` bytes may be on their way
in each direction (a fast long link with deep buffers): the throughput a
sender gets is bounded by its own window divided by the round trip, not
by the relay. One thread per
direction per connection reads and stamps chunks; one writer thread per
direction releases them when due.

    python3 bench/delay_relay.py --listen 127.0.0.1:0 --upstream 127.0.0.1:22 --rtt-ms 50

prints `listening on HOST:PORT` and relays until killed. `DelayRelay` does
the same inside run.py.
"""

from __future__ import annotations

import argparse
import collections
import socket
import sys
import threading
import time

CHUNK = 256 * 1024
#: Bytes in flight per direction before the relay stops reading (16 MiB:
#: more than any SSH window, so the end-to-end windows set the pace).
LINK_BUFFER = 16 * 1024 * 1024


class DelayRelay:
    """Listens on `listen` (port 0: any free port) and relays every
    connection to `upstream`, adding `rtt` seconds of round trip."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], rtt: float) -> None:
        self.upstream = upstream
        self.one_way = rtt / 2
        self.sock = socket.create_server(listen, reuse_port=False)
        self.addr = self.sock.getsockname()[:2]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, server)
            self._pipe(server, client)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        """Bytes from `src` reach `dst` one-way-delay later."""
        queue: collections.deque = collections.deque()
        ready = threading.Condition()
        queued = [0]

        def reader() -> None:
            while True:
                with ready:
                    while queued[0] >= LINK_BUFFER:
                        ready.wait()
                try:
                    data = src.recv(CHUNK)
                except OSError:
                    data = b""
                with ready:
                    queue.append((time.monotonic() + self.one_way, data))
                    queued[0] += len(data)
                    ready.notify_all()
                if not data:
                    return

        def writer() -> None:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, data = queue.popleft()
                    queued[0] -= len(data)
                    ready.notify_all()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    try:
                        src.close()
                    except OSError:
                        pass
                    return

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--upstream", required=True, help="HOST:PORT to relay to")
    ap.add_argument("--rtt-ms", type=float, required=True, help="round trip added, in milliseconds")
    args = ap.parse_args()
    lh, lp = args.listen.rsplit(":", 1)
    uh, up = args.upstream.rsplit(":", 1)
    relay = DelayRelay((lh, int(lp)), (uh, int(up)), args.rtt_ms / 1000)
    print(f"listening on {relay.addr[0]}:{relay.addr[1]}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
