"""--send against a real SMTP server (aiosmtpd on 127.0.0.1, a free port)."""

from __future__ import annotations

import datetime as dt
import email
import socket
import ssl
from email import policy

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.utils import copy_database, edit_published

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

pytestmark = pytest.mark.slow
runner = CliRunner()


class Inbox:
    """aiosmtpd handler keeping every message; refuses recipients listed in ``refuse``."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        self.refuse = refuse
        self.logins: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(handler, **kwargs):  # noqa: ANN001, ANN003
    port = _free_port()
    controller = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, port


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller, port = _start(inbox)
    yield inbox, port
    controller.stop()


def _managers(db):
    with duckdb.connect(str(db), read_only=True) as con:
        am = con.execute("""SELECT account_manager_id FROM attributed_events
                            WHERE account_manager_id <> 'UNASSIGNED' AND day >= '2026-03-01'
                            GROUP BY ALL ORDER BY count(*) LIMIT 1""").fetchall()[0][0]
        people = dict(con.execute("SELECT person_id, email FROM people").fetchall())
    return am, people


def test_send_mails_the_html_and_the_csv_to_the_managers_address(published_db, smtp, tmp_path):
    inbox, port = smtp
    am, people = _managers(published_db)
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(published_db),
            "--out",
            str(tmp_path),
            "--manager",
            am,
            "--send",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(port),
            "--mail-from",
            "ops@example.org",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"sent to {people[am]}" in result.output
    assert len(inbox.messages) == 1
    sender, recipients, message = inbox.messages[0]
    assert sender == "ops@example.org" and recipients == [people[am]]
    assert message["To"].addresses[0].addr_spec == people[am]
    assert "Revenue report 2026-03" in message["Subject"]
    html_file = tmp_path / "account_managers" / f"{am}.html"
    csv_file = tmp_path / "account_managers" / f"{am}.csv"
    body = message.get_body(preferencelist=("html",))
    sent_html = body.get_content().replace("\r\n", "\n").rstrip("\n")
    assert sent_html == html_file.read_text(encoding="utf-8").rstrip("\n")
    assert "Booked revenue" in message.get_body(preferencelist=("plain",)).get_content()
    attachments = {
        part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()
    }
    assert attachments == {f"{am}.html": html_file.read_bytes(), f"{am}.csv": csv_file.read_bytes()}


def test_dry_run_connects_to_nothing(published_db, smtp, tmp_path):
    inbox, port = smtp
    am, people = _managers(published_db)
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(published_db),
            "--out",
            str(tmp_path),
            "--manager",
            am,
            "--send",
            "--dry-run",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(port),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"would send to {people[am]}" in result.output
    assert inbox.messages == []


def test_missing_address_and_refused_recipient_are_reported_and_exit_1(published_db, tmp_path):
    db = copy_database(published_db, tmp_path / "copy.duckdb")
    with duckdb.connect(str(db), read_only=True) as con:
        tm = con.execute("""SELECT territory_manager_id FROM attributed_events
                            WHERE territory_manager_id <> 'UNASSIGNED' AND day >= '2026-03-01'
                            GROUP BY ALL ORDER BY count(*) LIMIT 1""").fetchall()[0][0]
    edit_published(db, "people", ("UPDATE people SET email = NULL WHERE person_id = ?", [tm]))
    am, people = _managers(db)
    inbox = Inbox(refuse=(people[am],))
    controller, port = _start(inbox)
    try:
        results = [
            runner.invoke(
                app,
                [
                    "report",
                    "--db",
                    str(db),
                    "--out",
                    str(tmp_path / "out"),
                    "--manager",
                    manager,
                    "--send",
                    "--smtp-host",
                    "127.0.0.1",
                    "--smtp-port",
                    str(port),
                ],
            )
            for manager in (tm, am)
        ]
    finally:
        controller.stop()
    assert [r.exit_code for r in results] == [1, 1], [r.output for r in results]
    assert "no email in people" in results[0].output
    assert "refused by the server" in results[1].output and "550" in results[1].output
    assert inbox.messages == []


def test_credentials_need_starttls(published_db, tmp_path, monkeypatch):
    monkeypatch.setenv("REVATTR_SMTP_USER", "ops")
    monkeypatch.setenv("REVATTR_SMTP_PASSWORD", "secret")
    am, _people = _managers(published_db)
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(published_db),
            "--out",
            str(tmp_path),
            "--manager",
            am,
            "--send",
            "--smtp-port",
            "9",
        ],
    )
    assert result.exit_code == 2
    assert "--starttls" in result.output


def _self_signed(tmp_path):
    crypto = pytest.importorskip("cryptography")
    del crypto
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_starttls_and_login_from_the_environment(published_db, tmp_path, monkeypatch):
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()

    def authenticate(server, session, envelope, mechanism, auth_data):  # noqa: ANN001
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"ops",
            b"s3cret",
        )
        if ok:
            inbox.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    controller, port = _start(
        inbox,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    # (A failed login is not exercised: aiosmtpd 1.4.6 stalls after a failed AUTH over TLS.)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test's own certificate
    monkeypatch.setenv("REVATTR_SMTP_USER", "ops")
    monkeypatch.setenv("REVATTR_SMTP_PASSWORD", "s3cret")
    am, people = _managers(published_db)
    try:
        result = runner.invoke(
            app,
            [
                "report",
                "--db",
                str(published_db),
                "--out",
                str(tmp_path / "out"),
                "--manager",
                am,
                "--send",
                "--starttls",
                "--smtp-host",
                "127.0.0.1",
                "--smtp-port",
                str(port),
            ],
        )
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    assert inbox.logins == ["ops"]
    assert [m[1] for m in inbox.messages] == [[people[am]]]
