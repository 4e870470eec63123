# -*- test-case-name: tests.test_devserver -*-
"""
C{make run}: a development server one command away.

Makes a development PKI if there is none (L{wardled.certs.init_directory}),
starts C{twistd -n wardled} on 127.0.0.1 with the embedded store (no etcd
needed), waits until it is ready, then prints curl, httpie and kubectl
commands that work as pasted.  Ctrl-C (or SIGTERM) stops the server.

Run as C{python -m wardled.devserver [--dir .dev] [--port 8443] [-- extra
twistd wardled flags]}.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shlex
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence

from wardled import certs

READY_TIMEOUT = 60.0
GROUP_PATH = "/apis/wardle.example.com/v1beta1"
FIRST_FLUNDER = (
    '{"apiVersion":"wardle.example.com/v1beta1","kind":"Flunder",'
    '"metadata":{"name":"my-first-flunder","labels":{"sample-label":"true"}}}'
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wardled.devserver",
        description="Run wardled for development: certificates, embedded store, ready-to-paste commands.",
    )
    parser.add_argument("--dir", default=".dev", help="where certificates and data live (default .dev)")
    parser.add_argument("--port", type=int, default=8443, help="HTTPS port on 127.0.0.1 (default 8443)")
    parser.add_argument("extra", nargs="*", help="more twistd wardled flags (after --)")
    return parser


def twistd_command(directory: str, port: int, extra: Sequence[str] = ()) -> list[str]:
    """
    The C{twistd -n wardled} command line for the development server.
    """
    pki = os.path.join(directory, "certs")
    return [
        os.path.join(os.path.dirname(sys.executable), "twistd"),
        "-n",
        "--pidfile=",
        "wardled",
        "--secure-port", str(port),
        "--bind-address", "127.0.0.1",
        "--data-dir", os.path.join(directory, "data"),
        "--tls-cert-file", os.path.join(pki, "server.crt"),
        "--tls-private-key-file", os.path.join(pki, "server.key"),
        "--client-ca-file", os.path.join(pki, "ca.crt"),
        *extra,
    ]


def example_commands(directory: str, port: int) -> list[str]:
    """
    Shell commands that talk to the development server as its admin
    (paths absolute, so they work from any directory).
    """
    pki = os.path.abspath(os.path.join(directory, "certs"))
    ca, cert, key = (os.path.join(pki, name) for name in ("ca.crt", "client.crt", "client.key"))
    kubeconfig = os.path.join(pki, "kubeconfig")
    collection = f"https://127.0.0.1:{port}{GROUP_PATH}/namespaces/default/flunders"
    httpie = os.path.join(os.path.dirname(sys.executable), "http")
    httpie = shlex.quote(httpie) if os.path.exists(httpie) else "http"
    tls = f"-sS --cacert {shlex.quote(ca)} --cert {shlex.quote(cert)} --key {shlex.quote(key)}"
    return [
        f"curl {tls} -H 'Content-Type: application/json' -d {shlex.quote(FIRST_FLUNDER)} {collection}",
        f"curl {tls} {collection}",
        (f"{httpie} --ignore-stdin --verify={shlex.quote(ca)} --cert={shlex.quote(cert)} --cert-key={shlex.quote(key)} "
        f"{collection}/my-first-flunder"),
        f"kubectl --kubeconfig {shlex.quote(kubeconfig)} get flunders",
        f"kubectl --kubeconfig {shlex.quote(kubeconfig)} get fischers.v1alpha1.wardle.example.com",
    ]


def _ready(directory: str, port: int) -> bool:
    pki = os.path.join(directory, "certs")
    context = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
    context.load_cert_chain(os.path.join(pki, "client.crt"), os.path.join(pki, "client.key"))
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_ready(process: subprocess.Popen[bytes], directory: str, port: int) -> bool:
    """
    Wait until the server answers C{/readyz} (C{True}) or exits (C{False}).
    """
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _ready(directory, port):
            return True
        time.sleep(0.1)
    return False


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    directory, port = arguments.dir, arguments.port
    made = certs.init_directory(
        os.path.join(directory, "certs"), server_url=f"https://127.0.0.1:{port}"
    )
    if made.written:
        print(f"made development certificates in {directory}/certs: {' '.join(made.written)}")
    pki = os.path.join(directory, "certs")
    certs.write_kubeconfig(  # the port may differ from the last run's
        os.path.join(pki, "kubeconfig"),
        f"https://127.0.0.1:{port}",
        os.path.join(pki, "ca.crt"),
        os.path.join(pki, "client.crt"),
        os.path.join(pki, "client.key"),
        certs.DEFAULT_USER,
    )
    process = subprocess.Popen(twistd_command(directory, port, arguments.extra))
    signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        if not wait_ready(process, directory, port):
            process.terminate()
            return process.wait() or 1
        print(f"\nwardled is serving on https://127.0.0.1:{port} (data in {directory}/data; Ctrl-C stops it).")
        print("Paste any of these into another shell:\n")
        for command in example_commands(directory, port):
            print(f"  {command}")
        print(flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        status = process.wait()
        # Stopped by the Ctrl-C we passed on: a normal end.
        return 0 if status == -signal.SIGINT else status


if __name__ == "__main__":
    sys.exit(main())
