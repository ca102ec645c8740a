"""Throwaway DVC remote servers on 127.0.0.1 for the team tests, both pure Python from PyPI:
an S3-compatible server (moto) and an SSH/SFTP server (asyncssh, which dvc-ssh's client also uses).

Each yields a `Remote`: the URL and options a project commits to .dvc/config, and the secrets each
user keeps in .dvc/config.local.
"""
from __future__ import annotations

import asyncio
import getpass
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

KEY_ID, SECRET = "xmr-test-key", "xmr-test-secret"


@dataclass
class Remote:
    url: str
    options: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)


@contextmanager
def s3_server(bucket: str = "team"):
    """A moto S3 server on a free port with one empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                     region_name="us-east-1").create_bucket(Bucket=bucket)
        yield Remote(f"s3://{bucket}/xmr", {"endpointurl": endpoint},
                     {"access_key_id": KEY_ID, "secret_access_key": SECRET})
    finally:
        server.stop()


@contextmanager
def sftp_server(root: Path):
    """An SSH server on a free port that serves SFTP only, to one generated client key; the remote's
    files go under root/store."""
    import asyncssh

    root.mkdir(parents=True, exist_ok=True)
    client_key = root / "id_ed25519"
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(client_key)
    key.write_public_key(root / "id_ed25519.pub")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def listen():
        return await asyncssh.listen("127.0.0.1", 0, server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
                                     authorized_client_keys=str(root / "id_ed25519.pub"), sftp_factory=True,
                                     allow_scp=False)

    server = asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=30)
    try:
        port = server.sockets[0].getsockname()[1]
        yield Remote(f"ssh://127.0.0.1:{port}{(root / 'store').resolve()}", {},
                     {"user": getpass.getuser(), "keyfile": str(client_key)})
    finally:
        server.close()
        asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
