# -*- test-case-name: tests.test_tap -*-
"""
Tests for L{wardled.tap}: the command line parsed into a L{WardledConfig},
and the real C{twistd -n wardled} ending every bad start with one line on
stderr.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence

from twisted.trial.unittest import SynchronousTestCase

from tests.etcdserver import EtcdServer
from tests.harness import (
    ADMIN,
    ALICE,
    STRANGER,
    TestPKI,
    WardledProcess,
    free_port,
    venv_bin,
)
from wardled import tap
from wardled.config import DEFAULT_CERT_DIR, DEFAULT_ETCD_PREFIX, WardledConfig

ETCD = "http://127.0.0.1:2379"


def parse(args: Sequence[str]) -> WardledConfig:
    """
    Parse C{args} as C{twistd wardled} would and return the config.
    """
    options = tap.Options()
    options.parseOptions(list(args))
    return options.config


class OptionsTests(SynchronousTestCase):
    """
    Tests for L{tap.Options} turning flags into a L{WardledConfig}.
    """

    def setUp(self) -> None:
        self.pki = TestPKI.create(self.mktemp())

    def assertUsageError(self, args: Sequence[str], message: str) -> None:
        """
        Parsing C{args} ends the process with C{wardled: error: message}.
        """
        error = self.assertRaises(SystemExit, parse, args)
        self.assertEqual(error.code, f"wardled: error: {message}")

    def test_defaults(self) -> None:
        """
        With only C{--etcd-servers}, every other field has the reference's
        default (except the port: 8443, not 443).
        """
        config = parse(["--etcd-servers", ETCD])
        self.assertEqual(config, WardledConfig(etcd_servers=(ETCD,)))
        self.assertEqual(
            (config.secure_port, config.bind_address, config.etcd_prefix),
            (8443, "0.0.0.0", DEFAULT_ETCD_PREFIX),
        )
        self.assertEqual(config.cert_dir, DEFAULT_CERT_DIR)
        self.assertTrue(config.http2)
        self.assertFalse(config.access_log)
        self.assertEqual(config.disable_admission_plugins, frozenset())

    def test_every_flag(self) -> None:
        """
        Every flag lands in its field, in both C{--flag=value} and
        C{--flag value} forms.
        """
        pki = self.pki
        config = parse(
            [
                "--secure-port=9443",
                "--bind-address",
                "127.0.0.1",
                "--etcd-servers=http://127.0.0.1:2379/, http://localhost:2379",
                "--etcd-prefix",
                "/registry/test",
                "--tls-cert-file",
                pki.server_cert_file,
                f"--tls-private-key-file={pki.server_key_file}",
                "--client-ca-file",
                pki.ca_file,
                "--cert-dir=/var/lib/wardled/certs",
                "--disable-admission-plugins=BanFlunder",
                "--disable-http2-serving",
                "--access-log",
                "--watch-cache-sizes=flunders.wardle.example.com#500,fischers.wardle.example.com#7",
            ]
        )
        self.assertEqual(
            config,
            WardledConfig(
                secure_port=9443,
                bind_address="127.0.0.1",
                etcd_servers=("http://127.0.0.1:2379", "http://localhost:2379"),
                etcd_prefix="/registry/test",
                tls_cert_file=pki.server_cert_file,
                tls_private_key_file=pki.server_key_file,
                client_ca_file=pki.ca_file,
                cert_dir="/var/lib/wardled/certs",
                disable_admission_plugins=frozenset({"BanFlunder"}),
                http2=False,
                watch_cache_sizes=(("flunders", 500), ("fischers", 7)),
                access_log=True,
            ),
        )

    def test_etcd_tls_files(self) -> None:
        """
        The etcd CA, certificate and key are checked and kept.
        """
        pki = self.pki
        admin = pki.users[ADMIN]
        config = parse(
            [
                "--etcd-servers=https://127.0.0.1:2379",
                "--etcd-cafile", pki.ca_file,
                "--etcd-certfile", admin.cert_file,
                "--etcd-keyfile", admin.key_file,
            ]
        )
        self.assertEqual(
            (config.etcd_cafile, config.etcd_certfile, config.etcd_keyfile),
            (pki.ca_file, admin.cert_file, admin.key_file),
        )

    def test_client_ca_without_serving_cert(self) -> None:
        """
        A client CA alone is fine (the serving pair is then self-signed).
        """
        config = parse(["--etcd-servers", ETCD, "--client-ca-file", self.pki.ca_file])
        self.assertEqual(config.client_ca_file, self.pki.ca_file)
        self.assertIsNone(config.tls_cert_file)

    def test_ipv6_bind_address(self) -> None:
        """
        An IPv6 bind address is accepted in its normal form.
        """
        config = parse(["--etcd-servers", ETCD, "--bind-address", "0:0::1"])
        self.assertEqual(config.bind_address, "::1")

    def test_unknown_flag(self) -> None:
        self.assertUsageError(["--bogus"], "option --bogus not recognized")

    def test_missing_etcd_servers(self) -> None:
        """
        Without C{--etcd-servers} the embedded store in C{--data-dir} is
        used; given but empty, it is the reference's error.
        """
        config = parse([])
        self.assertEqual((config.etcd_servers, config.data_dir), ((), "wardled-data"))
        self.assertEqual(parse(["--data-dir", "/srv/w"]).data_dir, "/srv/w")
        self.assertUsageError(["--etcd-servers", " , "], "--etcd-servers must be specified")

    def test_bad_etcd_server(self) -> None:
        for server in ("127.0.0.1:2379", "ftp://x", "http://", "http://h:port"):
            self.assertUsageError(
                ["--etcd-servers", f"{ETCD},{server}"],
                f"invalid --etcd-servers entry {server!r}: "
                "want http://host:port or https://host:port",
            )

    def test_bad_port(self) -> None:
        for port in ("0", "65536", "-1", "http", ""):
            self.assertUsageError(
                ["--etcd-servers", ETCD, f"--secure-port={port}"],
                f"invalid --secure-port {port!r}: must be an integer in 1..65535",
            )

    def test_bad_bind_address(self) -> None:
        self.assertUsageError(
            ["--etcd-servers", ETCD, "--bind-address", "localhost"],
            "invalid --bind-address 'localhost': not an IP address",
        )

    def test_unknown_admission_plugin(self) -> None:
        """
        Worded like the reference's admission options.
        """
        self.assertUsageError(
            ["--etcd-servers", ETCD, "--disable-admission-plugins", "BanFlunder,Nope"],
            'disable-admission-plugins plugin "Nope" is unknown',
        )

    def test_bad_watch_cache_sizes(self) -> None:
        want = "want a whole number of events >= 1 (wardled always caches)"
        for value, message in [
            ("pods#5", "invalid --watch-cache-sizes entry 'pods#5': want "
             + "flunders.wardle.example.com#SIZE or fischers.wardle.example.com#SIZE"),
            ("flunders.wardle.example.com#x", "invalid --watch-cache-sizes size 'x' for "
             + f"flunders.wardle.example.com: {want}"),
            ("fischers.wardle.example.com#0", "invalid --watch-cache-sizes size '0' for "
             + f"fischers.wardle.example.com: {want}"),
        ]:
            self.assertUsageError(
                ["--etcd-servers", ETCD, "--watch-cache-sizes", value], message
            )

    def test_unreadable_files(self) -> None:
        """
        Every file flag names itself, the path and the reason.
        """
        missing = os.path.join(self.pki.directory, "missing.pem")
        for flag in (
            "tls-cert-file",
            "tls-private-key-file",
            "client-ca-file",
            "etcd-cafile",
            "etcd-certfile",
            "etcd-keyfile",
        ):
            self.assertUsageError(
                ["--etcd-servers", ETCD, f"--{flag}", missing],
                f"cannot read --{flag} {missing}: No such file or directory",
            )

    def test_pairs_go_together(self) -> None:
        self.assertUsageError(
            ["--etcd-servers", ETCD, "--tls-cert-file", self.pki.server_cert_file],
            "--tls-cert-file and --tls-private-key-file must be given together",
        )
        self.assertUsageError(
            ["--etcd-servers", ETCD, "--etcd-keyfile", self.pki.server_key_file],
            "--etcd-certfile and --etcd-keyfile must be given together",
        )

    def test_mismatched_key(self) -> None:
        pki = self.pki
        self.assertUsageError(
            [
                "--etcd-servers", ETCD,
                "--tls-cert-file", pki.server_cert_file,
                "--tls-private-key-file", pki.users[ALICE].key_file,
            ],
            "--tls-cert-file/--tls-private-key-file/--client-ca-file: private key "
            f"{pki.users[ALICE].key_file} does not match certificate "
            f"{pki.server_cert_file}",
        )

    def test_mismatched_etcd_key(self) -> None:
        pki = self.pki
        error = self.assertRaises(
            SystemExit,
            parse,
            [
                "--etcd-servers", ETCD,
                "--etcd-certfile", pki.users[ADMIN].cert_file,
                "--etcd-keyfile", pki.users[ALICE].key_file,
            ],
        )
        self.assertIsInstance(error.code, str)
        assert isinstance(error.code, str)
        self.assertTrue(
            error.code.startswith(
                "wardled: error: --etcd-cafile/--etcd-certfile/--etcd-keyfile: "
            ),
            error.code,
        )
        self.assertNotIn("\n", error.code)


class EtcdPreflightTests(SynchronousTestCase):
    """
    Tests for L{tap.check_etcd_reachable} against a closed port (a real
    etcd answering is covered by the integration tests below).
    """

    def test_nothing_listening(self) -> None:
        port = free_port()
        servers = (f"http://127.0.0.1:{port}", f"http://localhost:{port}")
        error = self.assertRaises(
            SystemExit, tap.check_etcd_reachable, WardledConfig(etcd_servers=servers)
        )
        self.assertEqual(
            error.code,
            "wardled: error: cannot reach etcd (--etcd-servers): "
            f"http://127.0.0.1:{port}: Connection refused; "
            f"http://localhost:{port}: Connection refused",
        )


class ListenPreflightTests(SynchronousTestCase):
    """
    Tests for L{tap.check_can_listen}.
    """

    def test_free_port(self) -> None:
        port = free_port()
        config = WardledConfig(secure_port=port, bind_address="127.0.0.1")
        tap.check_can_listen(config)
        with socket.socket() as again:
            again.bind(("127.0.0.1", port))

    def test_taken_port(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            config = WardledConfig(secure_port=port, bind_address="127.0.0.1")
            error = self.assertRaises(SystemExit, tap.check_can_listen, config)
        self.assertEqual(
            error.code,
            f"wardled: error: cannot listen on 127.0.0.1:{port}: "
            "Address already in use",
        )


# --- the real twistd command line ----------------------------------------


def twistd(
    *args: str, cwd: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n --pidfile= wardled ARGS} from the project's virtualenv.
    """
    return subprocess.run(
        [venv_bin("twistd"), "-n", "--pidfile=", "wardled", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], expected: str
) -> None:
    """
    twistd exited non-zero with exactly C{wardled: error: expected} on
    stderr, no traceback, and no usage text.
    """
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert result.stderr == f"wardled: error: {expected}\n", result.stderr
    assert "Usage:" not in result.stdout
    assert "Traceback" not in result.stdout


def test_help(tmp_path: object) -> None:
    """
    C{--help} prints the flags and exits 0.
    """
    result = twistd("--help", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    for flag in (
        "--secure-port",
        "--bind-address",
        "--etcd-servers",
        "--etcd-prefix",
        "--etcd-cafile",
        "--etcd-certfile",
        "--etcd-keyfile",
        "--tls-cert-file",
        "--tls-private-key-file",
        "--client-ca-file",
        "--cert-dir",
        "--disable-admission-plugins",
        "--disable-http2-serving",
        "--access-log",
    ):
        assert flag in result.stdout, flag
    assert result.stderr == ""


def test_unknown_flag_one_line(tmp_path: object) -> None:
    result = twistd("--etcd-servers", ETCD, "--no-such-flag", cwd=str(tmp_path))
    assert_one_line_error(result, "option --no-such-flag not recognized")


def test_bad_port_one_line(tmp_path: object) -> None:
    result = twistd("--etcd-servers", ETCD, "--secure-port", "99999", cwd=str(tmp_path))
    assert_one_line_error(
        result, "invalid --secure-port '99999': must be an integer in 1..65535"
    )


def test_unreadable_cert_one_line(pki: TestPKI, tmp_path: object) -> None:
    missing = f"{tmp_path}/nope/server.crt"
    result = twistd(
        "--etcd-servers", ETCD,
        "--tls-cert-file", missing,
        "--tls-private-key-file", pki.server_key_file,
        cwd=str(tmp_path),
    )
    assert_one_line_error(
        result, f"cannot read --tls-cert-file {missing}: No such file or directory"
    )


def test_mismatched_key_one_line(pki: TestPKI, tmp_path: object) -> None:
    wrong_key = pki.users[ALICE].key_file
    result = twistd(
        "--etcd-servers", ETCD,
        "--tls-cert-file", pki.server_cert_file,
        "--tls-private-key-file", wrong_key,
        cwd=str(tmp_path),
    )
    assert_one_line_error(
        result,
        "--tls-cert-file/--tls-private-key-file/--client-ca-file: private key "
        f"{wrong_key} does not match certificate {pki.server_cert_file}",
    )


def test_unreachable_etcd_one_line(pki: TestPKI, tmp_path: object) -> None:
    """
    With nothing listening on the etcd port, twistd stops before the reactor
    runs and names the server and the reason.
    """
    port = free_port()
    result = twistd(
        "--etcd-servers", f"http://127.0.0.1:{port}",
        "--tls-cert-file", pki.server_cert_file,
        "--tls-private-key-file", pki.server_key_file,
        cwd=str(tmp_path),
    )
    assert_one_line_error(
        result,
        "cannot reach etcd (--etcd-servers): "
        f"http://127.0.0.1:{port}: Connection refused",
    )


def test_bad_cert_dir_one_line(etcd: EtcdServer, tmp_path: object) -> None:
    """
    Without a serving certificate, a C{--cert-dir} that cannot be created is
    reported in one line.
    """
    blocker = f"{tmp_path}/file"
    with open(blocker, "w") as output:
        output.write("not a directory\n")
    result = twistd(
        "--etcd-servers", etcd.url, "--cert-dir", f"{blocker}/certs",
        cwd=str(tmp_path),
    )
    assert_one_line_error(
        result,
        f"cannot create a self-signed certificate in --cert-dir {blocker}/certs: "
        "Not a directory",
    )


def test_port_in_use_one_line(pki: TestPKI, tmp_path: object) -> None:
    """
    A port someone else listens on ends the start with one line, before
    etcd is even asked.
    """
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = twistd(
            *WardledProcess.command(ETCD, pki, port)[4:],
            cwd=str(tmp_path),
        )
    assert_one_line_error(
        result, f"cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_server_answers(wardled: WardledProcess) -> None:
    """
    The session's server, started from the command line, answers /healthz
    over HTTP/1.1 (Python), HTTP/2 (curl) and through kubectl, and refuses a
    certificate from an unknown CA.
    """
    assert wardled.https("GET", "/healthz").status == 200
    over_h2 = wardled.curl("-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                           "/healthz", http2=True)
    assert over_h2.stdout == "2 200", over_h2.stderr
    kubectl = wardled.kubectl("get", "--raw", "/healthz")
    assert (kubectl.returncode, kubectl.stdout.strip()) == (0, "ok"), kubectl.stderr
    refused = wardled.curl("/healthz", user=STRANGER)
    assert refused.returncode != 0
    assert wardled.running
