"""A stand-in for a hosted PostgreSQL such as Neon, started by the suite on free ports.

A private cluster with `ssl=on`, a certificate authority and server certificate made here,
and scram-sha-256 as the only authentication; PgBouncer in transaction mode in front, with
TLS on both sides, as Neon's `-pooler` endpoints run it.
"""

from __future__ import annotations

import datetime
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# Roles of the stand-in: `todo` may connect only over TLS, `plain` only without it.
TLS_USER = "todo"
PLAIN_USER = "plain"
PASSWORD = "s3cret-Pw"
DATABASE = "todo"
SUPERUSER = "postgres"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found and name != "pg_ctl":
        return found
    # Debian keeps the server binaries out of PATH.
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else found


def missing_tools() -> list[str]:
    """What the stand-in needs and this machine lacks."""
    return [name for name in ("initdb", "pg_ctl", "pgbouncer") if _binary(name) is None]


def _as_owner(command: list[str]) -> list[str]:
    # PostgreSQL and PgBouncer refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", SUPERUSER, "--", *command]
    return command


def _run(command: list[str], **kwargs: object) -> None:
    subprocess.run(_as_owner(command), check=True, capture_output=True, timeout=60, **kwargs)  # type: ignore[call-overload]  # noqa: S603


@dataclass
class Certificates:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path


def _make_certificates(directory: Path) -> Certificates:
    """A CA, a second unrelated CA, and a server certificate for `localhost` only."""
    now = datetime.datetime.now(datetime.UTC)

    def authority(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = authority("Todo test CA")
    _other_key, other_cert = authority("Unrelated test CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificates = Certificates(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    certificates.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certificates.other_ca.write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    certificates.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    certificates.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificates.server_key.chmod(0o600)
    return certificates


class HostedPostgres:
    """The cluster and its pooler; `start()` then `stop()` (once per test session)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="todo-pg-"))
        self.port = _free_port()
        self.pooler_port = _free_port()
        self.certificates: Certificates | None = None
        self._pgbouncer: subprocess.Popen[bytes] | None = None

    @property
    def certs(self) -> Certificates:
        assert self.certificates is not None
        return self.certificates

    def url(
        self,
        *,
        user: str = TLS_USER,
        password: str = PASSWORD,
        host: str = "localhost",
        port: int | None = None,
        database: str = DATABASE,
        **query: str,
    ) -> str:
        """A libpq-style URL to the cluster (or, with `port=pooler_port`, the pooler)."""
        parameters = "&".join(f"{name}={quote(value, safe='/')}" for name, value in query.items())
        return (
            f"postgresql://{user}:{quote(password, safe='')}@{host}:{port or self.port}/"
            f"{database}{'?' + parameters if parameters else ''}"
        )

    def start(self) -> None:
        self.certificates = _make_certificates(self.directory)
        data = self.directory / "data"
        password_file = self.directory / "password"
        password_file.write_text(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(self.directory, SUPERUSER, SUPERUSER)
            for path in self.directory.iterdir():
                shutil.chown(path, SUPERUSER, SUPERUSER)
        self.directory.chmod(0o755)
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        assert initdb
        assert pg_ctl
        _run(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
                "--no-sync",
                "--no-instructions",
            ]
        )
        (data / "postgresql.conf").write_text(
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.directory}'\n"
            "ssl = on\n"
            f"ssl_cert_file = '{self.certs.server_cert}'\n"
            f"ssl_key_file = '{self.certs.server_key}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 60\n"
            "shared_buffers = 16MB\n",
            encoding="utf-8",
        )
        (data / "pg_hba.conf").write_text(
            "local all all scram-sha-256\n"
            f"hostssl all {SUPERUSER} 127.0.0.1/32 scram-sha-256\n"
            f"hostssl all {TLS_USER} 127.0.0.1/32 scram-sha-256\n"
            f"hostnossl all {PLAIN_USER} 127.0.0.1/32 scram-sha-256\n",
            encoding="utf-8",
        )
        _run([pg_ctl, "-D", str(data), "-l", str(self.directory / "postgres.log"), "-w", "start"])
        self._psql(
            f"CREATE ROLE {TLS_USER} LOGIN PASSWORD '{PASSWORD}';"
            f"CREATE ROLE {PLAIN_USER} LOGIN PASSWORD '{PASSWORD}';"
            f"CREATE DATABASE {DATABASE} OWNER {TLS_USER};"
            f"GRANT ALL ON DATABASE {DATABASE} TO {PLAIN_USER};"
        )
        self._psql(f"GRANT ALL ON SCHEMA public TO {PLAIN_USER};", database=DATABASE)
        self._start_pgbouncer()

    def _psql(self, sql: str, database: str = "postgres") -> None:
        environment = {**os.environ, "PGPASSWORD": PASSWORD}
        for statement in filter(None, (part.strip() for part in sql.split(";"))):
            subprocess.run(  # noqa: S603
                [
                    _binary("psql") or "psql",
                    f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database} "
                    "sslmode=require",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qc",
                    statement,
                ],
                check=True,
                capture_output=True,
                env=environment,
                timeout=30,
            )

    def _start_pgbouncer(self) -> None:
        pgbouncer = _binary("pgbouncer")
        assert pgbouncer
        users = self.directory / "userlist.txt"
        users.write_text(f'"{TLS_USER}" "{PASSWORD}"\n', encoding="utf-8")
        config = self.directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            # The server side verifies the cluster's certificate and host name.
            f"{DATABASE} = host=localhost port={self.port} dbname={DATABASE}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.pooler_port}\n"
            f"unix_socket_dir = {self.directory}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            # Few server connections, so consecutive transactions of one client land on
            # different ones, as they do under load.
            "default_pool_size = 2\n"
            "max_client_conn = 100\n"
            "client_tls_sslmode = require\n"
            f"client_tls_cert_file = {self.certs.server_cert}\n"
            f"client_tls_key_file = {self.certs.server_key}\n"
            "server_tls_sslmode = verify-full\n"
            f"server_tls_ca_file = {self.certs.ca}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n",
            encoding="utf-8",
        )
        if os.geteuid() == 0:
            for path in (users, config):
                shutil.chown(path, SUPERUSER, SUPERUSER)
        self._pgbouncer = subprocess.Popen(  # noqa: S603
            _as_owner([pgbouncer, str(config)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.pooler_port), timeout=1).close()
                return
            except OSError:
                if self._pgbouncer.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(
            "PgBouncer did not start: " + (self.directory / "pgbouncer.log").read_text()[-2000:]
        )

    def stop(self) -> None:
        if self._pgbouncer is not None:
            self._pgbouncer.terminate()
            try:
                self._pgbouncer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._pgbouncer.kill()
        pg_ctl = _binary("pg_ctl")
        if pg_ctl and (self.directory / "data" / "postmaster.pid").exists():
            subprocess.run(  # noqa: S603
                _as_owner([pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "stop"]),
                check=False,
                capture_output=True,
                timeout=30,
            )
        shutil.rmtree(self.directory, ignore_errors=True)
