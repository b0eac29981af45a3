"""Configuration: ``newsletter.toml`` plus environment overrides.

The file is found with ``--config``, then ``NEWSLETTER_CONFIG``, then ``./newsletter.toml``. With no
file at all the embedded defaults apply, so a fresh checkout runs without set-up. Secrets never live
in the file: they come from environment variables only. Any key may be overridden by an environment
variable ``NEWSLETTER_<SECTION>_<KEY>`` (``NEWSLETTER_DATABASE_URL``, ``NEWSLETTER_NEWSLETTER_NAME``),
as a twelve-factor deployment expects.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator

from newsletter.errors import ConfigError
from newsletter.urls import HttpUrl, http_url

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_CONFIG_NAME = "newsletter.toml"
#: A DNS name or DKIM selector: dot-separated labels of letters, digits, '-' and '_'.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_LABELS = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewsletterSettings(_Section):
    """Who sends the newsletter and when; shown in the masthead and footer of every email."""

    name: str = Field(default="The Weekly Brief", min_length=1)
    tagline: str = "News, statements and actions from the past week"
    from_address: EmailStr = "newsletter@example.org"
    from_name: str = ""
    reply_to: EmailStr = "editors@example.org"
    postal_address: str = Field(
        default="Example Organisation, 1 Example Street, Washington, DC 20001, USA", min_length=1
    )
    base_url: HttpUrl = "http://127.0.0.1:8000"
    list_id: str = "weekly.example.org"
    language: str = "en"
    logo_url: HttpUrl | None = None
    why_subscribed: str = "You are receiving this email because you subscribed to our weekly newsletter."
    send_weekday: str = "friday"
    send_time: dt.time = dt.time(9, 0)
    timezone: str = "America/New_York"
    #: Who hears about a scheduled send that did not go out (a missing or failing issue file, a
    #: missed time): a plain message through the configured provider. Empty: the worker's log only.
    editors: list[EmailStr] = []

    @field_validator("editors", mode="before")
    @classmethod
    def _address_list(cls, value: object) -> object:
        """``NEWSLETTER_NEWSLETTER_EDITORS="a@x.org, b@x.org"`` from the environment is a list too."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        """Archive links are built as ``{base_url}/issues/...``; a trailing slash would double."""
        return value.rstrip("/")

    @field_validator("logo_url", mode="before")
    @classmethod
    def _blank_is_no_logo(cls, value: object) -> object:
        """``NEWSLETTER_NEWSLETTER_LOGO_URL=`` (or ``logo_url = ""``) means no logo, not a bad URL."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("send_weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in WEEKDAYS:
            raise ValueError(f"must be one of {', '.join(WEEKDAYS)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def archive_url(self, issue_date: dt.date) -> str:
        """Where the web archive publishes an issue; the email's "View in browser" link."""
        return f"{self.base_url}/issues/{issue_date.isoformat()}/"


class DatabaseSettings(_Section):
    url: str = "sqlite:///newsletter.db"


class PathsSettings(_Section):
    issues: Path = Path("issues")


class ScheduleSettings(_Section):
    """How ``newsletter worker`` treats scheduled sends."""

    #: A send whose time passed while no worker ran still goes out if a worker starts within this
    #: many seconds of it; later it becomes ``missed`` (never sent days late).
    misfire_grace_seconds: int = Field(default=3600, ge=0)


class CheckSettings(_Section):
    """``check --links``, and the link check that ``send`` and the worker run before sending."""

    #: What ``send`` and the worker do with the link check: ``fail`` refuses an issue with a broken
    #: link, ``warn`` prints the findings and sends, ``off`` skips it.
    links: str = "warn"
    #: Fetch URLs whose host resolves to a loopback, private, link-local or metadata address. Off,
    #: such a URL is reported and never requested (an issue file must not make the service probe
    #: its own network); on only for a test or an intranet newsletter.
    allow_private_links: bool = False
    #: Seconds one request may take (each redirect hop is a request).
    timeout: float = Field(default=10.0, gt=0, le=300)
    #: Requests in flight at once, in all and to one host.
    concurrency: int = Field(default=100, ge=1, le=512)
    per_host: int = Field(default=4, ge=1, le=64)
    #: Redirects followed before a link counts as broken.
    max_redirects: int = Field(default=10, ge=0, le=50)
    #: Bytes of a body read when a server refuses HEAD and GET is used instead.
    max_body_bytes: int = Field(default=4096, ge=0, le=1024 * 1024)
    #: An image larger than this is a warning (mail clients load every image of an email).
    image_max_bytes: int = Field(default=1024 * 1024, ge=1)
    #: URLs checked by one run at most; more is bad input (an issue has 40-90).
    max_links: int = Field(default=10_000, ge=1)
    #: How long an answer is reused: a good one, a bad one (``check --links --fresh`` ignores both).
    cache_good_seconds: int = Field(default=86_400, ge=0)
    cache_bad_seconds: int = Field(default=3_600, ge=0)
    #: The cache file; empty for ``links.json`` in the user's cache directory.
    cache_file: Path | None = None

    @field_validator("links")
    @classmethod
    def _mode(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("fail", "warn", "off"):
            raise ValueError("must be fail, warn or off")
        return value

    @field_validator("cache_file", mode="before")
    @classmethod
    def _blank_is_default(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class EspSettings(_Section):
    """Which email service provider delivers, and how hard to push it.

    Secrets are never here: ``token_env`` and ``password_env`` name the environment variables that
    hold them.
    """

    #: ``outbox``, ``smtp``, ``postmark``, ``sendgrid``, ``mailgun``, ``ses``:
    #: ``delivery/esp/registry.py`` is the list.
    provider: str = "outbox"
    #: The provider's API base URL (a fake ESP's, in tests); empty for the provider's own.
    base_url: str = ""
    #: Recipients per batch (one claim); 0 for the provider's maximum (Postmark 500, SendGrid and
    #: Mailgun 1000, SES 500 as ten requests of 50).
    batch_size: int = Field(default=0, ge=0)
    #: Messages per second for the send, shared by its processes; 0 for no limit (the account's).
    rate: float = Field(default=0.0, ge=0)
    #: Batches in flight at once per process (``send --workers`` overrides).
    workers: int = Field(default=1, ge=1, le=64)
    #: Processes a send runs in, each with ``workers`` batches in flight (``send --processes``
    #: overrides). More than one uses more cores: building batches is CPU work.
    processes: int = Field(default=1, ge=1, le=64)
    #: Seconds to wait for the provider's answer; past it the batch's outcome is unknown.
    timeout: float = Field(default=30.0, gt=0)
    #: How long a claimed batch may stay in flight before it counts as abandoned (unknown).
    lease_seconds: int = Field(default=600, ge=30)
    #: Where the outbox writes its .eml files.
    outbox_dir: Path = Path("outbox")
    #: The environment variable holding the API token; empty for the provider's own default
    #: (Postmark ``POSTMARK_TOKEN``, SendGrid ``SENDGRID_API_KEY``, Mailgun ``MAILGUN_API_KEY``:
    #: ``delivery/esp/registry.py``). SES always reads the standard ``AWS_ACCESS_KEY_ID``,
    #: ``AWS_SECRET_ACCESS_KEY`` and optional ``AWS_SESSION_TOKEN``.
    token_env: str = ""
    #: Mailgun: the sending domain (required).
    domain: str = ""
    #: The provider's region, checked per provider by ``delivery/esp/registry.py``: Mailgun ``us``
    #: (``api.mailgun.net``, the default) or ``eu`` (``api.eu.mailgun.net``); SES an AWS region
    #: name such as ``eu-west-1`` (required: identities and templates live in one region).
    #: ``base_url`` overrides the endpoint the region implies, not the region SES signs for.
    region: str = ""
    #: SES: the configuration set every message is sent with. Optional for sending, but SES
    #: publishes events (bounces, complaints, deliveries) only through a configuration set's
    #: event destination: without one the webhooks never hear of this send.
    configuration_set: str = ""
    #: Postmark: the message stream for broadcasts; and whether to send through a per-issue
    #: template (the body travels once per send) rather than a full body per message.
    message_stream: str = "broadcast"
    templates: bool = True
    #: SMTP relay.
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    tls: str = "none"
    username: str = ""
    password_env: str = "SMTP_PASSWORD"
    #: The mailto: of List-Unsubscribe; default the reply-to address.
    unsubscribe_mailto: str = ""
    #: DKIM selectors the provider signs the From domain with (``doctor`` looks them up); empty for
    #: what the provider's API says, else its usual ones (``ProviderDns`` in each adapter module).
    dkim_selectors: tuple[str, ...] = ()

    @field_validator("dkim_selectors", mode="before")
    @classmethod
    def _selector_list(cls, value: object) -> object:
        """``NEWSLETTER_ESP_DKIM_SELECTORS`` arrives as one string: split it on commas."""
        return _comma_list(value)

    @field_validator("dkim_selectors")
    @classmethod
    def _selectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for selector in value:
            if not _DNS_LABELS.fullmatch(selector):
                raise ValueError(f"{selector[:100]!r} is not a DKIM selector (letters, digits, '-', '.')")
        return value

    @field_validator("provider")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("tls")
    @classmethod
    def _tls_mode(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("starttls", "tls", "none"):
            raise ValueError("must be starttls, tls or none")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower()
        if value and ("/" in value or "@" in value or any(c.isspace() for c in value)):
            raise ValueError("must be a domain name, such as mg.example.org")
        return value

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        """Only tidied here: which regions exist is each provider's business (the registry's)."""
        return value.strip().lower()

    @field_validator("configuration_set")
    @classmethod
    def _configuration_set(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError("must be up to 64 letters, digits, '_' or '-' (an SES configuration set name)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """Empty means the provider's own; anything else follows the one URL rule of ``newsletter.urls``."""
        value = value.strip()
        return http_url(value).rstrip("/") if value else ""


class WebhooksSettings(_Section):
    """What ``newsletter serve`` accepts from providers' webhooks (bounces, complaints, ...).

    The credentials are never here: the keys name the environment variables holding them (Postmark's
    basic-auth user and password, SendGrid's verification key, Mailgun's signing key). If a
    provider's are unset, every request claiming to come from it is refused. SES needs no secret
    (SNS signs its messages) but a list of the topics that are ours.
    """

    postmark_user_env: str = "POSTMARK_WEBHOOK_USER"
    postmark_password_env: str = "POSTMARK_WEBHOOK_PASSWORD"
    #: Holds SendGrid's Signed Event Webhook verification key (base64 DER, as SendGrid shows it).
    sendgrid_public_key_env: str = "SENDGRID_WEBHOOK_PUBLIC_KEY"
    #: Holds Mailgun's HTTP webhook signing key.
    mailgun_signing_key_env: str = "MAILGUN_WEBHOOK_SIGNING_KEY"
    #: Seconds a signed request's timestamp may be from our clock, either way (SendGrid, Mailgun,
    #: SNS). Providers that resend a request with its first signature get their retry window on
    #: top (Mailgun 8.5 hours, SNS 1 hour: ``events/mailgun.py``, ``events/ses.py``). At most 12
    #: hours: a replayed Mailgun token is remembered for a day, longer than both together.
    timestamp_tolerance: int = Field(default=300, ge=1, le=12 * 3600)
    #: Soft bounces of one address before it is suppressed (a full mailbox may empty again).
    soft_bounce_limit: int = Field(default=3, ge=1)
    #: Amazon SES through SNS: the ARNs of the SNS topics whose messages are accepted. A valid SNS
    #: signature proves SNS sent a message, not that the topic is ours; empty refuses every message.
    #: In the environment, a comma-separated list.
    ses_topic_arns: tuple[str, ...] = ()

    @field_validator("ses_topic_arns", mode="before")
    @classmethod
    def _topic_list(cls, value: object) -> object:
        """``NEWSLETTER_WEBHOOKS_SES_TOPIC_ARNS`` arrives as one string: split it on commas."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("ses_topic_arns")
    @classmethod
    def _topic_arns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            if not _SNS_TOPIC_ARN.fullmatch(arn):
                raise ValueError(f"{arn[:200]!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        return value


class ArchiveSettings(_Section):
    """The web archive: what ``newsletter serve`` and ``newsletter archive build`` publish."""

    #: Issues in the Atom feed (newest first), each with its full content (about 30 KB).
    feed_entries: int = Field(default=20, ge=1, le=500)
    #: Seconds browsers and caches may keep a public archive page or the feed (Cache-Control).
    max_age: int = Field(default=300, ge=0, le=7 * 24 * 3600)


class Topic(_Section):
    """A topic a subscriber may choose on their preferences page: a tag and what the page calls it."""

    tag: str = Field(min_length=1, max_length=100)
    label: str = Field(min_length=1, max_length=200)


#: ``[web] limit_storage`` naming the service's own database (``store/ratelimits.py``).
DATABASE_LIMITS = "database"


class WebSettings(_Section):
    """What ``newsletter serve`` offers subscribers: their personal page and its limits."""

    #: Topics on the preferences page (``[[web.topics]]`` tables of ``tag`` and ``label``).
    topics: tuple[Topic, ...] = ()
    #: Days after unsubscribing during which the same link offers "Resubscribe".
    resubscribe_days: int = Field(default=30, ge=0, le=3650)
    #: The largest form body accepted (bytes); a larger one is refused with 413 before it is read.
    max_form_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    #: Seconds a page's form stays valid (its CSRF field is signed with the time it was served).
    form_max_age: int = Field(default=2 * 3600, ge=60)
    #: Proxies whose ``X-Forwarded-For`` / ``-Proto`` are believed (IP addresses or networks).
    trusted_proxies: tuple[str, ...] = ()
    # -- sign-up with double opt-in (/subscribe, /confirm/TOKEN) and /manage ---------------------
    #: Hours a confirmation link works.
    confirm_hours: int = Field(default=48, ge=1, le=24 * 30)
    #: The version id of the consent text the sign-up form shows, stored with each consent.
    consent_text_version: str = Field(default="signup-1", min_length=1, max_length=100)
    #: Rate limits (the ``limits`` library's notation, ``;`` between several). ``per_address``
    #: counts confirmation and preferences mails to one address, ``per_domain`` to one address
    #: domain, ``per_ip`` sign-up and manage requests from one client address.
    limit_per_address: str = "1 per 10 minutes; 3 per day"
    limit_per_domain: str = "50 per hour; 500 per day"
    limit_per_ip: str = "10 per hour; 50 per day"
    #: Where the counters live: ``database`` (the service's, shared by every ``serve`` process on
    #: it), ``memory://`` (this process only, lost at restart) or any ``limits`` storage URI.
    limit_storage: str = DATABASE_LIMITS
    #: Proof of work (ALTCHA): PBKDF2 iterations per attempt, and seconds a challenge is good for.
    altcha_cost: int = Field(default=5000, ge=1, le=1_000_000)
    altcha_expires: int = Field(default=600, ge=30, le=12 * 3600)  # a claimed one is kept a day

    @field_validator("limit_per_address", "limit_per_domain", "limit_per_ip")
    @classmethod
    def _limits(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit such as '3 per day; 1 per 10 minutes'") from None
        return value


class BouncesSettings(_Section):
    """The ``smtp`` provider's way back: bounces, complaints and mailto unsubscribes, read by IMAP.

    With ``address`` set, each SMTP message's envelope sender is ``LOCAL+TOKEN@DOMAIN`` of it (VERP:
    TOKEN names the delivery, signed), and the ``mailto:`` of List-Unsubscribe is
    ``unsubscribe_address`` (default: ``address``) with a token the same way; both must arrive in
    the mailbox ``imap_host`` serves (plus-addressing, or a catch-all). ``newsletter worker`` and
    ``newsletter bounces poll`` read ``folder`` there and move each message they processed to
    ``done_folder`` (empty: flag it and leave it in place). The password is never here:
    ``password_env`` names the environment variable that holds it.
    """

    address: str = ""
    unsubscribe_address: str = ""
    imap_host: str = ""
    port: int = Field(default=993, ge=1, le=65535)
    #: ``tls`` (IMAPS, port 993), ``starttls`` or ``none`` (a local server only).
    tls: str = "tls"
    username: str = ""
    password_env: str = "BOUNCES_IMAP_PASSWORD"
    folder: str = "INBOX"
    done_folder: str = "Processed"
    #: Seconds to wait for each IMAP answer; a server that stops answering is tried on the next poll.
    timeout: float = Field(default=30.0, gt=0)
    #: How often the worker reads the mailbox.
    poll_seconds: float = Field(default=60.0, gt=0)
    #: Messages fetched per IMAP request, and at most per poll (the rest wait for the next one).
    page_size: int = Field(default=200, ge=1, le=5000)
    max_per_poll: int = Field(default=5000, ge=1)
    #: Bytes of one message that are read; the rest of a larger one is left unread (a bounce says
    #: what it is about at its start, whatever it quotes after).
    max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    #: Failed recipients taken from one bounce; more are logged and left out.
    max_recipients: int = Field(default=10_000, ge=1)

    @field_validator("address", "unsubscribe_address")
    @classmethod
    def _plain_address(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[A-Za-z0-9._-]{1,40}@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value):
            raise ValueError("must be a plain address without '+' (a VERP token is added after it)")
        return value

    @field_validator("tls")
    @classmethod
    def _tls_mode(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("starttls", "tls", "none"):
            raise ValueError("must be starttls, tls or none")
        return value

    @property
    def verp(self) -> bool:
        """Whether messages carry VERP addresses (``address`` is set)."""
        return bool(self.address)

    @property
    def mailbox(self) -> bool:
        """Whether there is a mailbox to read (``imap_host`` is set)."""
        return bool(self.imap_host)


class DoctorSettings(_Section):
    """``newsletter doctor``: where it asks DNS, how long it waits, what it judges against."""

    #: DNS servers to ask (``host`` or ``host:port``, ``[v6]:port``); empty for the system's.
    nameservers: tuple[str, ...] = ()
    #: Seconds for each DNS query and each HTTP request.
    timeout: float = Field(default=5.0, gt=0, le=120)
    #: The domain the SPF record must include; empty for the provider's own (``ProviderDns``).
    spf_include: str = ""
    #: The latest finished sends whose complaint and bounce rates judge the list's health.
    health_sends: int = Field(default=5, ge=1, le=100)
    #: ``NEWSLETTER_SECRET_KEY`` shorter than this is reported (tokens refuse under 16).
    secret_min_length: int = Field(default=32, ge=16, le=1024)

    @field_validator("nameservers", mode="before")
    @classmethod
    def _server_list(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("nameservers")
    @classmethod
    def _servers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            nameserver_address(server)
        return value

    @field_validator("spf_include")
    @classmethod
    def _include(cls, value: str) -> str:
        value = value.strip().lower()
        if value and not _DNS_LABELS.fullmatch(value):
            raise ValueError("must be a domain name, such as spf.example.net")
        return value


def nameserver_address(server: str) -> tuple[str, int]:
    """``(ip, port)`` of a ``[doctor] nameservers`` entry: ``1.2.3.4``, ``1.2.3.4:5353``,
    ``::1``, ``[::1]:5353``. DNS servers are named by address: resolving their names needs DNS."""
    text = server.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"{server!r}: expected [address]:port")
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        if not digits.isdigit():
            raise ValueError(f"{server!r}: expected address:port")
        port = int(digits)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{server!r} is not an IP address (a DNS server is named by its address)") from None
    if not 0 < port < 65536:
        raise ValueError(f"{server!r}: the port must be 1-65535")
    return host, port


def _comma_list(value: object) -> object:
    """A list setting given in the environment arrives as one string: split it on commas."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class Settings(_Section):
    newsletter: NewsletterSettings = NewsletterSettings()
    database: DatabaseSettings = DatabaseSettings()
    paths: PathsSettings = PathsSettings()
    esp: EspSettings = EspSettings()
    webhooks: WebhooksSettings = WebhooksSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    archive: ArchiveSettings = ArchiveSettings()
    bounces: BouncesSettings = BouncesSettings()
    web: WebSettings = WebSettings()
    check: CheckSettings = CheckSettings()
    doctor: DoctorSettings = DoctorSettings()
    source: Path | None = None


def _env_overrides(environ: dict[str, str]) -> dict[tuple[str, str], str]:
    """The ``NEWSLETTER_<SECTION>_<KEY>`` variables set in ``environ``, by (section, key)."""
    found = {}
    for section, model in Settings.model_fields.items():
        annotation = model.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        for key in annotation.model_fields:
            env_name = f"NEWSLETTER_{section}_{key}".upper()
            if env_name in environ:
                found[(section, key)] = env_name
    return found


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Overlay ``NEWSLETTER_<SECTION>_<KEY>`` variables on the file's values."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for (section, key), env_name in _env_overrides(environ).items():
        merged.setdefault(section, {})[key] = environ[env_name]
    return merged


def find_config_file(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Path | None:
    environ = dict(os.environ) if environ is None else environ
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    if environ.get("NEWSLETTER_CONFIG"):
        path = Path(environ["NEWSLETTER_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"NEWSLETTER_CONFIG points at {path}, which does not exist")
        return path
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    """The file's tables; an unreadable, non-UTF-8 or malformed file is a :class:`ConfigError` (exit 2)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")  # Notepad writes a BOM
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        byte = raw[exc.start]
        message = f"not UTF-8 text (byte {exc.start}, on line {line}, is {byte:#04x}); save it as UTF-8"
        raise ConfigError(f"{path}: {message}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_settings(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, overlay and validate the configuration; every bad key is named in the error."""
    environ = dict(os.environ) if environ is None else environ
    path = find_config_file(explicit, environ)
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path)
    data = _apply_env(data, environ)
    if path is not None:
        data["source"] = path
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        from_env = _env_overrides(environ)
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            env_name = (
                from_env.get((str(error["loc"][0]), str(error["loc"][1]))) if len(error["loc"]) > 1 else None
            )
            # The value that failed is the variable's, not the file's: name the variable.
            where = f"environment variable {env_name}" if env_name else str(path) if path else "configuration"
            if error["type"] == "extra_forbidden":
                lines.append(f"{where}: {key}: unknown key")
            else:
                lines.append(f"{where}: {key}: {error['msg']}")
        raise ConfigError("\n".join(lines)) from None
    if path is not None and not settings.paths.issues.is_absolute():
        settings = settings.model_copy(
            update={"paths": PathsSettings(issues=path.parent / settings.paths.issues)}
        )
    return settings
