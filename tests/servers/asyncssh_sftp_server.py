#!/usr/bin/env python3
"""AsyncSSH's SFTP server as a remote for the end-to-end tests
(tests/src/asyncssh_sftpd.rs): one user with a password, confined to ROOT
(chroot), an Ed25519 host key at HOSTKEY (created if missing, so a restart
keeps it). Prints "listening on PORT" once it accepts connections; runs
until killed.

Usage: asyncssh_sftp_server.py ROOT PORT USER PASSWORD HOSTKEY
"""

import asyncio
import os
import sys
import warnings

warnings.simplefilter("ignore")  # cryptography's DSA deprecation noise

import asyncssh  # noqa: E402


def main():
    root, port, user, password, host_key = sys.argv[1:6]
    if not os.path.exists(host_key):
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(host_key)

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username):
            return True

        def password_auth_supported(self):
            return True

        def validate_password(self, username, pw):
            return username == user and pw == password

    async def serve():
        await asyncssh.listen(
            "127.0.0.1",
            int(port),
            server_host_keys=[host_key],
            server_factory=Server,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=root),
            allow_scp=False,
        )
        print(f"listening on {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
