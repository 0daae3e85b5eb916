"""Mail each written report to its manager through SMTP.

One message per report, to the ``email`` of the manager in ``people``:

* body: a short plain-text summary and, as its HTML alternative, the report
  itself (mail clients that block ``data:`` images show it without charts);
* attachments: ``<person_id>.html`` (the complete, printable report) and
  ``<person_id>.csv`` (the rows behind it).

One SMTP connection for all messages; ``starttls`` upgrades it (certificate and
host name verified with the system's trust store, or ``SSL_CERT_FILE``); login
only after STARTTLS, with ``REVATTR_SMTP_USER`` / ``REVATTR_SMTP_PASSWORD`` from
the environment (never from flags, which show up in process lists). A manager
without a usable address, or a recipient the server refuses, is reported and the
others are still sent. Names in headers and the text body are one line without
control or bidi characters (``inert.header_text``), at most 80 characters, so a
CRM name can neither inject a header nor reorder or bloat a subject.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid

from pipelines.errors import UserError
from pipelines.reports.inert import NAME_LIMIT, header_text
from pipelines.reports.render import TITLES, ReportSet, WrittenReport, money

USER_ENV, PASSWORD_ENV = "REVATTR_SMTP_USER", "REVATTR_SMTP_PASSWORD"
DEFAULT_SENDER = "revattr-reports@localhost"
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.?[^@\s<>,;:\"()\[\]\\]*")


@dataclass
class Delivery:
    report: WrittenReport
    to: str | None
    subject: str
    problem: str | None = None  # why it cannot be sent (or why the server refused it)
    sent: bool = False

    @property
    def files(self) -> list[str]:
        return [p.name for p in (self.report.html, self.report.csv) if p is not None]

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in (self.report.html, self.report.csv) if p is not None)


def _clean(text: str) -> str:
    """A name for a header or the text body: one line, no bidi controls, bounded."""
    return header_text(text, NAME_LIMIT)


def plan(reports: ReportSet) -> list[Delivery]:
    """Who gets what: one delivery per written report."""
    out = []
    for r in reports.written:
        basis = f", {reports.basis_text}" if reports.basis != "as_booked" else ""
        subject = (
            f"Revenue report {reports.period.label}{basis}: "
            f"{TITLES[r.kind].lower()} {_clean(r.display)}"
        )
        email = (r.email or "").strip()
        if not email:
            out.append(Delivery(r, None, subject, problem="no email in people"))
        elif not _ADDRESS.fullmatch(email):
            out.append(Delivery(r, email, subject, problem="email is not a plain address"))
        else:
            out.append(Delivery(r, email, subject))
    return out


def build_message(delivery: Delivery, reports: ReportSet, sender: str) -> EmailMessage:
    r = delivery.report
    assert delivery.to is not None and r.html is not None and r.csv is not None
    local, _, domain = delivery.to.rpartition("@")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = Address(display_name=_clean(r.display), username=local, domain=domain)
    message["Subject"] = delivery.subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    html = r.html.read_bytes()
    message.set_content(
        f"Hello {_clean(r.display)},\n\n"
        f"your {TITLES[r.kind].lower()} report for {reports.period.title} "
        f"({reports.period.span}) is attached.\n\n"
        f"Booked revenue ({reports.basis_text}): {money(r.booked)} "
        f"(previous period {money(r.previous_booked)}), "
        f"{r.events:,} events.\n\n"
        f"{r.html.name}: the report (open it in a browser; it prints to A4 or Letter).\n"
        f"{r.csv.name}: the rows behind it.\n"
    )
    message.add_alternative(html.decode("utf-8"), subtype="html")
    message.add_attachment(html, maintype="text", subtype="html", filename=r.html.name)
    message.add_attachment(r.csv.read_bytes(), maintype="text", subtype="csv", filename=r.csv.name)
    return message


def send(
    deliveries: list[Delivery],
    reports: ReportSet,
    host: str,
    port: int,
    starttls: bool = False,
    sender: str = DEFAULT_SENDER,
    timeout: float = 60.0,
) -> list[Delivery]:
    """Send the deliveries that have no problem; sets ``sent`` or ``problem`` on each."""
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if bool(user) != bool(password):
        raise UserError(
            f"only one of {USER_ENV} and {PASSWORD_ENV} is set", hint="set both, or neither"
        )
    if user and not starttls:
        raise UserError(
            "SMTP credentials without --starttls would be sent in clear text",
            hint="add --starttls, or unset " + USER_ENV,
        )
    if not _ADDRESS.fullmatch(sender):
        raise UserError(f"--mail-from {sender!r} is not a plain address")
    todo = [d for d in deliveries if d.problem is None]
    if not todo:
        return deliveries
    try:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    except OSError as error:
        raise UserError(
            f"cannot connect to the SMTP server {host}:{port}: {error}",
            hint="check --smtp-host and --smtp-port",
        ) from error
    try:
        smtp.ehlo()
        if starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if user:
            smtp.login(user, password or "")
        for delivery in todo:
            try:
                refused = smtp.send_message(build_message(delivery, reports, sender))
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as error:
                delivery.problem = f"refused by the server: {error}"
                continue
            except smtplib.SMTPSenderRefused as error:
                raise UserError(f"the SMTP server refused the sender {sender}: {error}") from error
            if refused:
                delivery.problem = f"refused by the server: {refused}"
            else:
                delivery.sent = True
    except smtplib.SMTPAuthenticationError as error:
        raise UserError(
            f"SMTP login as {user!r} failed: {error.smtp_code}",
            hint=f"check {USER_ENV} and {PASSWORD_ENV}",
        ) from error
    except (smtplib.SMTPException, ssl.SSLError, OSError) as error:
        raise UserError(
            f"SMTP conversation with {host}:{port} failed: {error}",
            hint="check the server, --starttls and the credentials",
        ) from error
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    return deliveries
