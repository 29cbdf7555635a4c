"""nginx (Debian package) as the reference: WebDAV PUT to store a file, plain GET to serve it.

Debian 12 ships the DAV module in the `nginx` package (1.22, `--with-http_dav_module` in
`nginx -V`); `nginx-light` is built without it. Installing is opt-in:

    .venv/bin/python -m bench.nginx --install   # apt-get update && apt-get install -y nginx
    .venv/bin/python -m bench.nginx             # check, print the config, start/stop once

The configuration mirrors a production static/upload server and is written to a temp dir:

- worker_processes 2 (one per core), sendfile on, tcp_nopush on, tcp_nodelay on;
- keepalive_timeout 65s, keepalive_requests 10000 (uvicorn has no per-connection limit);
- access_log off (assetd is run with its access log off as well); error_log warn;
- client_max_body_size 0 (no limit, assetd's default is 5 GiB);
- client_body_temp_path inside the document root's filesystem, so a PUT is written once
  and then renamed into place, as assetd's staging + rename does;
- dav_methods PUT DELETE, create_full_put_path on, dav_access user:rw group:r all:r.

nginx does not fsync a PUT body; assetd fsyncs the blob and its directory before it answers
(docs/benchmarks.md discusses what that costs).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import HOST, free_port, log, process_tree, stop_process, wait_until_up

DEB_PACKAGE = "nginx"

CONFIG = """\
# Written by bench/nginx.py; reference server for assetd's benchmarks.
{user_line}
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
daemon off;
master_process on;

events {{
    worker_connections 1024;
}}

http {{
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 10000;
    access_log off;
    default_type application/octet-stream;
    server_tokens off;

    client_max_body_size 0;
    client_body_temp_path {body_temp};

    server {{
        listen {host}:{port};
        root {root};

        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )


def has_dav(binary: str) -> bool:
    done = subprocess.run([binary, "-V"], capture_output=True, text=True, check=False)
    return "--with-http_dav_module" in (done.stdout + done.stderr)


def install() -> None:
    """apt-get install the Debian package (services are not started: policy-rc.d or not)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", DEB_PACKAGE], check=True, env=env)


def ensure_nginx(*, allow_install: bool) -> str:
    binary = nginx_binary()
    if binary is None and allow_install:
        install()
        binary = nginx_binary()
    if binary is None:
        raise SystemExit(
            f"nginx is not installed: apt-get install -y {DEB_PACKAGE} "
            "(or run with --install-nginx)"
        )
    if not has_dav(binary):
        raise SystemExit(
            f"{binary} lacks ngx_http_dav_module (nginx-light?): apt-get install -y {DEB_PACKAGE}"
        )
    return binary


def _worker_user() -> str | None:
    """As root, workers run as www-data (Debian's default); otherwise as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("www-data")
        return "www-data"
    except KeyError:
        return "nobody"


@dataclass
class NginxServer:
    """A private nginx: its own prefix, config, document root and port; stopped by pid."""

    workdir: Path
    binary: str = field(default_factory=lambda: nginx_binary() or "nginx")
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def write_config(self) -> Path:
        body_temp = self.root / ".nginx-body"  # same filesystem as root: PUT ends in a rename
        for path in (self.workdir, self.root, body_temp):
            path.mkdir(parents=True, exist_ok=True)
        user = _worker_user()
        if user is not None:
            os.chmod(self.workdir, 0o755)
            entry = pwd.getpwnam(user)
            for path in (self.root, body_temp):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        config = CONFIG.format(
            user_line=f"user {user};" if user else "",
            prefix=self.workdir,
            body_temp=body_temp,
            host=HOST,
            port=self.port,
            root=self.root,
        )
        path = self.workdir / "nginx.conf"
        path.write_text(config)
        return path

    def start(self) -> NginxServer:
        conf = self.write_config()
        # Each parent of the work dir must be traversable by the worker user.
        parent = self.workdir.parent
        if _worker_user() is not None and not os.stat(parent).st_mode & 0o001:
            os.chmod(parent, os.stat(parent).st_mode | 0o711)
        subprocess.run(
            [self.binary, "-t", "-q", "-p", str(self.workdir), "-c", str(conf)], check=True
        )
        errors = open(self.workdir / "stderr.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.workdir), "-c", str(conf)],
            stdout=errors,
            stderr=subprocess.STDOUT,
        )
        errors.close()
        wait_until_up(f"{self.base_url}/", self.proc, timeout=20)
        return self

    def pids(self) -> list[int]:
        assert self.proc is not None
        return process_tree(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGQUIT)  # graceful: master waits for workers

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help=f"apt-get install {DEB_PACKAGE}")
    args = parser.parse_args()
    binary = ensure_nginx(allow_install=args.install)
    print(subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip())
    with (
        tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp,
        NginxServer(Path(tmp) / "ng") as ng,
    ):
        print((ng.workdir / "nginx.conf").read_text())
        payload = b"x" * 1000
        put = subprocess.run(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-T",
                "-",
                f"{ng.base_url}/t/a.bin",
            ],
            input=payload,
            capture_output=True,
            check=True,
        )
        got = subprocess.run(
            ["curl", "-sS", f"{ng.base_url}/t/a.bin"], capture_output=True, check=True
        ).stdout
        log(f"nginx pids {ng.pids()} PUT -> {put.stdout.decode()}, GET -> {len(got)} bytes")
        if got != payload:
            sys.exit("nginx did not return what was PUT")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
