#!/usr/bin/env python3
"""Writes the hand-built seeds of the sftp_session fuzz target into
corpus/sftp_session/: SFTP v3 packet streams (INIT, then requests), each
file one mode byte (1: lockstep, 0: all at once; see
fuzz_targets/sftp_session.rs) and the stream. Run from fuzz/."""

import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "sftp_session")

READ, WRITE, APPEND, CREAT, TRUNC, EXCL = 1, 2, 4, 8, 0x10, 0x20


def u32(n):
    return struct.pack(">I", n)


def u64(n):
    return struct.pack(">Q", n)


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return u32(len(b)) + b


def attrs(size=None, mtime=None, perms=None):
    flags, body = 0, b""
    if size is not None:
        flags |= 1
        body += u64(size)
    if perms is not None:
        flags |= 4
        body += u32(perms)
    if mtime is not None:
        flags |= 8
        body += u32(mtime) + u32(mtime)
    return u32(flags) + body


def pkt(kind, body):
    return u32(len(body) + 1) + bytes([kind]) + body


class Stream:
    def __init__(self):
        self.id = 0
        self.data = pkt(1, u32(3))  # INIT v3

    def req(self, kind, body):
        self.id += 1
        self.data += pkt(kind, u32(self.id) + body)
        return self

    def open(self, path, flags, a=None):
        return self.req(3, s(path) + u32(flags) + (a or attrs()))

    def close(self, h):
        return self.req(4, s(h))

    def read(self, h, off, n):
        return self.req(5, s(h) + u64(off) + u32(n))

    def write(self, h, off, data):
        return self.req(6, s(h) + u64(off) + s(data))

    def lstat(self, p):
        return self.req(7, s(p))

    def fstat(self, h):
        return self.req(8, s(h))

    def setstat(self, p, a):
        return self.req(9, s(p) + a)

    def fsetstat(self, h, a):
        return self.req(10, s(h) + a)

    def opendir(self, p):
        return self.req(11, s(p))

    def readdir(self, h):
        return self.req(12, s(h))

    def remove(self, p):
        return self.req(13, s(p))

    def mkdir(self, p):
        return self.req(14, s(p) + attrs(perms=0o755))

    def rmdir(self, p):
        return self.req(15, s(p))

    def realpath(self, p):
        return self.req(16, s(p))

    def stat(self, p):
        return self.req(17, s(p))

    def rename(self, a, b):
        return self.req(18, s(a) + s(b))

    def readlink(self, p):
        return self.req(19, s(p))

    def symlink(self, a, b):
        return self.req(20, s(a) + s(b))

    def ext(self, name, data=b""):
        return self.req(200, s(name) + data)


def seeds():
    yield "upload", 1, Stream().open("/up.bin", WRITE | CREAT | TRUNC).write("h0", 0, b"abc" * 100).write("h0", 300, b"def").close("h0").stat("/up.bin")
    yield "upload_out_of_order", 1, Stream().open("up.bin", WRITE | CREAT | TRUNC).write("h0", 4, b"5678").write("h0", 0, b"1234").fsetstat("h0", attrs(mtime=1_700_000_000)).fstat("h0").close("h0")
    yield "upload_gap", 1, Stream().open("/gap", WRITE | CREAT).write("h0", 10, b"late").close("h0")
    yield "append_resume", 1, Stream().open("/hello.txt", WRITE | APPEND).write("h0", 13, b"more\n").close("h0").open("/hello.txt", WRITE).write("h1", 2, b"XY").close("h1")
    yield "exclusive", 1, Stream().open("/hello.txt", WRITE | CREAT | EXCL).open("/new", WRITE | CREAT | EXCL).close("h0")
    yield "download", 1, Stream().open("/hello.txt", READ).read("h0", 0, 5).read("h0", 5, 1000).read("h0", 100, 10).fstat("h0").close("h0").close("h0")
    yield "readdir", 1, Stream().opendir("/").readdir("h0").readdir("h0").readdir("h0").close("h0").opendir("/mnt").readdir("h1").close("h1")
    yield "dirs", 1, Stream().mkdir("/d").mkdir("/d/e").rename("/d/e", "/d/f").rmdir("/d/f").rmdir("/d").rmdir("/").rmdir("/sub")
    yield "rename_remove", 1, Stream().rename("/hello.txt", "/bye.txt").ext("posix-rename@openssh.com", s("/bye.txt") + s("/sub/hello.txt")).remove("/sub/hello.txt").rename("/mnt/remote.txt", "/x")
    yield "setstat", 1, Stream().setstat("/hello.txt", attrs(size=3)).setstat("/hello.txt", attrs(mtime=86400)).setstat("/hello.txt", attrs(perms=0o600)).lstat("/hello.txt")
    yield "paths", 1, Stream().realpath(".").realpath("/../../etc/passwd").realpath("a/./b/../c").stat("/..").stat("").stat("/nope").realpath("a\0b")
    yield "read_only", 1, Stream().open("/ro/readonly.txt", WRITE | TRUNC).remove("/ro/readonly.txt").rename("/ro/readonly.txt", "/x").rename("/hello.txt", "/ro/x").mkdir("/ro/d").setstat("/ro/readonly.txt", attrs(size=0)).open("/ro/readonly.txt", READ).read("h0", 0, 100).close("h0")
    yield "escape", 1, Stream().open("../../../outside.txt", WRITE | CREAT | TRUNC).write("h0", 0, b"x").close("h0").mkdir("/../bob/x").remove("/../../users/bob/secret.txt").rename("/hello.txt", "/../../../outside.txt")
    yield "mount", 1, Stream().open("/mnt/remote.txt", READ).read("h0", 0, 64).close("h0").open("/mnt/new", WRITE | CREAT | TRUNC).write("h1", 0, b"up").close("h1").remove("/mnt/remote.txt").remove("/mnt/new").rmdir("/mnt").stat("/mnt")
    yield "extended", 1, Stream().ext("statvfs@openssh.com", s("/")).ext("limits@openssh.com").ext("hardlink@openssh.com", s("/a") + s("/b")).ext("posix-rename@openssh.com", b"\0\0")
    yield "links", 1, Stream().readlink("/hello.txt").symlink("/l", "/hello.txt")
    yield "concurrent", 0, Stream().open("/a", WRITE | CREAT | TRUNC).open("/b", WRITE | CREAT | TRUNC).write("h0", 0, b"a").write("h1", 0, b"b").close("h0").close("h1").opendir("/").readdir("h2").stat("/a").remove("/b")
    st = Stream()
    for i in range(8):
        st.open(f"/f{i}", WRITE | CREAT | TRUNC)
    for i in range(8):
        st.write(f"h{i}", 0, bytes([65 + i]) * 10).close(f"h{i}")
    yield "many_handles", 1, st
    # Malformed: a request before INIT, a second INIT, an unknown type, a
    # short packet, then a zero-length frame that ends the session.
    bad = pkt(17, u32(1) + s("/")) + pkt(1, u32(3)) + pkt(1, u32(3)) + pkt(99, u32(2)) + pkt(3, u32(3) + b"\x00") + u32(0) + pkt(17, u32(4) + s("/"))
    yield "malformed", 1, bad
    yield "too_long", 0, Stream().data + u32(0xFFFFFF) + b"x" * 16


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, mode, stream in seeds():
        data = stream.data if isinstance(stream, Stream) else stream
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([mode]) + data)


if __name__ == "__main__":
    main()
