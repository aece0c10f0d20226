"""Configuration from the environment (12-factor). Every variable starts with PUNTE_."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from runtime.ingress import Window


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUNTE_", extra="ignore")

    service: str = "punte"
    kafka_bootstrap: str = "127.0.0.1:9092"
    # How every Kafka client of this process (runtime.kafka) connects: PLAINTEXT (the
    # embedded default, loopback only), SASL_PLAINTEXT, SASL_SSL or SSL. A SASL mechanism
    # (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) needs a SASL protocol, a username and a
    # password, or the process refuses to start (runtime.kafka.KafkaConfigError).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_username: str | None = None
    kafka_password: str | None = Field(default=None, repr=False)
    # The CA certificates (PEM) the broker's TLS certificate is checked against (SSL,
    # SASL_SSL); unset: the system's.
    kafka_ca_file: Path | None = None
    # The idempotent producer (no duplicates from a producer's own retries). Off by default
    # because the embedded Tansu broker answers InitProducerId with an error; set it on
    # Apache Kafka (`punte up --broker kafka` does).
    kafka_idempotent_producer: bool = False
    # The replication factor of a topic a process creates itself (ensure_topics). 1 fits the
    # single embedded broker; on Apache Kafka `punte kafka apply` creates the network's topics
    # replicated (decision 0027), and a topic created with fewer replicas than the cluster's
    # min.insync.replicas would refuse every acks=all write.
    kafka_replication_factor: int = Field(default=1, ge=1)
    # A server URL; each service uses its own database on it (punte_<service>).
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    # Databases are named <prefix>_<service>: two networks can share one server.
    database_prefix: str = "punte"
    # How long a starting service waits for its database (down, starting, failing over)
    # before it gives up and exits; each wait is logged, and the service is not ready
    # (its HTTP port not open) meanwhile.
    startup_timeout_seconds: float = 300.0
    # Whether a starting service migrates its database to head (under an advisory lock).
    # Off where a separate step migrates (Kubernetes: the migrations Job, `punte migrate`):
    # the service then checks its database is at head and, until it is, waits (within
    # PUNTE_STARTUP_TIMEOUT_SECONDS) and exits saying so; it never serves on another schema.
    migrate_on_start: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # A listening socket handed down by the process that started this one (the embedded
    # network's stack, which holds each port from the moment it chooses it): served instead
    # of binding http_host:http_port (runtime.http_server).
    http_socket_fd: int | None = None
    # Embedded default: the state folder holds keys and the token issuer's secrets.
    state_dir: Path = Path(".punte")
    # Public keys of every institution (see runtime.signing.Keyring).
    keyring_file: Path | None = None
    # Private key the network signs every message of its own topics with (deliveries,
    # cases, referrals, access, audit, dead letters); default <state_dir>/keys/network.key.
    # A service does not start without it.
    network_key_file: Path | None = None
    # Earlier network public keys still trusted on its topics during a rotation (a keyring
    # file, runtime.signing.Keyring, keys owned by "punte"); the current key always is.
    network_keyring_file: Path | None = None
    oidc_issuer: str = "http://127.0.0.1:8400"
    oidc_audience: str = "punte"
    # The JWS algorithms tokens may be signed with, comma-separated: asymmetric only
    # (never none or HS*). Keycloak signs RS256 by default; the embedded issuer EdDSA.
    oidc_algorithms: str = "EdDSA,RS256,ES256,PS256"
    # How long the issuer's keys (JWKS) are trusted before they are fetched again.
    oidc_jwks_ttl_seconds: float = 300.0
    # Key for child pseudonyms (HMAC-SHA256); hex. Must be set in production.
    pseudonym_key: str = Field(default="", repr=False)
    # Inbound events older than this, or further ahead of our clock, are refused.
    ingress_max_age_seconds: int = 7 * 24 * 3600
    ingress_max_skew_seconds: int = 300
    # The largest record value an institution may put on its ingress topic, checked before
    # the body is parsed or its signature computed: over it, TOO_LARGE (rejected outcome and
    # dead letter). The same 256 KiB as an HTTP body, so both paths take the same reports;
    # the topics' max.message.bytes (contracts/topics.yaml) is a little above it.
    ingress_max_message_bytes: int = 256 * 1024
    # Intake's identity vault: "keyid:hex32bytes,..." (AES-256-GCM); the first encrypts.
    identity_keys: str = Field(default="", repr=False)
    # Intake's encryption keys (report v3, sealed at the source): a JWKS file of private EC
    # P-256 keys, the first current (published first at /.well-known/jwks.json), the others
    # still open what was sealed to them; default <state_dir>/keys/intake-encryption.jwks.
    # Intake does not start without it.
    intake_encryption_keys_file: Path | None = None
    # The transition to sealed reports: while true, reports in clear (v1, v2) are still
    # accepted; false refuses them with CLEAR_REPORT_RETIRED (Kafka and HTTP alike).
    accept_clear_reports: bool = True
    # Key-encryption keys of this service's data keys (runtime.sealing, envelope encryption
    # of personal values per case): "keyid:hex32bytes,...", the first wraps. A service that
    # keeps personal values does not start without them.
    data_keys: str = Field(default="", repr=False)
    # Audit: the log's name in its checkpoints, its signing key, how often to checkpoint.
    audit_origin: str = "punte.ro/audit/bacau"
    audit_log_key_file: Path | None = None
    audit_checkpoint_seconds: float = 30.0
    # The tree integrates what the trail's consumer committed as soon as it commits; this poll
    # only finds what another replica appended (it polled every 200 ms: an idle trail's most
    # frequent work, issue #14).
    audit_tree_poll_seconds: float = 2.0
    # How often the audit verifies its whole trail against the broker for /metrics (the
    # PunteAuditNotVerified alert, decision 0037); 0: never (GET /verify still does).
    audit_verify_seconds: float = 900.0
    # Referral: a faster deadline table (tests, demos) and how often due timers are looked for.
    referral_deadlines_file: Path | None = None
    # The retention schedule (contracts/reference/retention.yaml unless set) and how often
    # each service's purge job looks for what is due.
    retention_file: Path | None = None
    purge_poll_seconds: float = 60.0
    timer_poll_seconds: float = 1.0
    # Notification: where people are sent (web inbox links), whom to tell and how.
    referral_url: str = "http://127.0.0.1:8002"  # referral's API, for the web inbox
    inbox_url: str = "http://127.0.0.1:8003/ui"  # the web inbox, linked from every message
    recipients_file: Path | None = None  # default <state_dir>/recipients.yaml
    smtp_host: str = ""  # empty: no e-mail is sent (the inbox and webhooks still are)
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_sender: str = "punte@example.invalid"
    smtp_username: str | None = None
    smtp_password: str | None = Field(default=None, repr=False)
    sms_file: Path | None = None  # the file SMS provider (embedded default); default <state_dir>/sms.jsonl
    dispatch_poll_seconds: float = 1.0
    # The most messages a consumer applies in one transaction: on a report's path, a batch
    # small enough that its transaction ends soon and its working set stays small (intake's
    # sealed reports: 10 MB less at 250 than at 500, the same CPU a report; bench/README.md,
    # step 31); the audit trail and the other background consumers, larger, for throughput.
    consumer_batch_max: int = 250
    consumer_batch_max_background: int = 500
    relay_batch_max: int = 500
    # The relay is woken by every commit of its process that wrote events; the poll only
    # finds rows another process wrote (a replica, the CLI), so it can be slow: an idle
    # service then costs nothing (issue #14).
    relay_poll_seconds: float = 1.0
    # A background loop that keeps finding nothing (the relay, the notification dispatcher,
    # the referral's timers, the audit tree) waits twice as long after each empty pass, up
    # to this; work or a wake brings it back to its interval (runtime.quiet, issue #14). A
    # due timer or another process's row then waits at most this long on a quiet network;
    # 0 keeps every loop at its interval.
    poll_quiet_seconds: float = 8.0
    # A loop woken by its own process's commits (the notification dispatcher, the audit tree)
    # waits this long before a pass after a wake or after a pass that worked, so the commits
    # of a trickle are taken together rather than one pass (and an empty one after it) each.
    poll_gather_seconds: float = Field(default=0.1, ge=0)
    # How long the broker may hold a consumer's fetch when nothing is new (decision 0033).
    # Apache Kafka answers as soon as a record arrives, so the wait costs no latency there;
    # Tansu answers later, and a fetch of many partitions costs it CPU each time, so
    # consumers a report passes through wait little and the others (the audit trail,
    # closures, institutions' commands) wait long: an idle network then costs the broker
    # almost nothing.
    kafka_fetch_max_wait_ms: int = 50
    kafka_fetch_max_wait_background_ms: int = 1000
    # A background consumer that had nothing for a while waits this long until records come
    # again: the audit trail reads every partition of the network (about 600), and its fetches
    # were most of an idle network's CPU. Nobody waits on it: the trail is seconds behind.
    kafka_fetch_max_wait_quiet_ms: int = 3000
    # While records come, a background consumer's fetch is answered when this much is new
    # (or its wait ends): one batch a wait instead of a few records at each of the broker's
    # looks. At 20 reports/s the audit trail used 9.8 CPU s for 600 reports, 2.0 with this
    # (bench/README.md, step 40). Once quiet, the first record is answered at once.
    kafka_fetch_min_bytes_background: int = Field(default=131072, ge=1)
    # How often each service reads the broker's epoch marker (runtime.broker_epoch, decision
    # 0026): a broker that came back empty is noticed within this (sooner while it is held).
    broker_epoch_check_seconds: float = 5.0
    handler_attempts: int = 3
    # Python's collector, once a service has started (runtime.collector, decision 0049): its
    # young generation is collected every this many allocations net of frees. Python's
    # default is 700, with which the collector took about a tenth of the services' CPU.
    gc_young_threshold: int = Field(default=20_000, ge=700)
    # Failure limits (runtime/inbox.py, decision 0022). A failing message waits for its
    # verdict: dead-lettered as poison when a good message follows it (or nothing follows
    # for the hold), but when more than this many in a row fail, or more than this many are
    # dead-lettered in a minute, the consumer stops uncommitted (health red) until an
    # operator resumes it (POST /consumers/{group}/resume). 0: no limit.
    consumer_max_consecutive_failures: int = 5
    consumer_max_failures_per_minute: int = 20
    consumer_failure_hold_seconds: float = 30.0
    # Limits (runtime/limits.py; counted per process). A request body over the maximum is
    # refused 413 TOO_LARGE. Rates are in the `limits` notation ("600/minute",
    # "20/second;600/minute"), a moving window; over one: 429 RATE_LIMITED with Retry-After.
    http_max_body_bytes: int = 256 * 1024
    rate_per_principal: str = "600/minute"  # authenticated calls of one person or system (token subject)
    rate_per_institution: str = "3000/minute"  # ... of all the people and systems of one institution
    rate_token_per_address: str = "60/minute"  # embedded identity provider's /token, per address and account
    rate_login_per_address: str = "20/minute"  # the pages' /ui/login, per address and account
    streams_per_institution: int = 20  # open inbox streams (server-sent events) of one institution
    streams_total: int = 200  # ... of all institutions
    # The gateway's wait for an outcome is woken by PostgreSQL NOTIFY; it also looks again
    # this often, should a notification be missed.
    outcome_recheck_seconds: float = 2.0
    # P0 pages (alert e-mail/SMS) to one person per clock-aligned window; alerts beyond stay
    # in the inbox and reach the person in one digest e-mail at the window's end.
    p0_pages_per_person: int = 5
    p0_page_window_seconds: int = 600
    log_level: str = "INFO"
    log_format: str = "json"
    # The other libraries' logs (uvicorn, aiokafka, SQLAlchemy, httpx), rendered as the
    # service's own JSON lines with trace ids: WARNING keeps aiokafka's rebalance chatter out.
    library_log_level: str = "WARNING"

    def oidc_algorithm_list(self) -> list[str]:
        from runtime.tokens import pinned_algorithms
        return list(pinned_algorithms(self.oidc_algorithms.split(",")))

    def database_for(self, service: str) -> str:
        """The URL of the service's own database on the configured server, with the
        server URL's options (?ssl=require, ...)."""
        from sqlalchemy.engine import make_url
        url = make_url(self.database_url).set(database=f"{self.database_prefix}_{service}")
        return url.render_as_string(hide_password=False)

    def ingress_window(self) -> "Window":
        from runtime.ingress import Window
        return Window(timedelta(seconds=self.ingress_max_age_seconds),
                      timedelta(seconds=self.ingress_max_skew_seconds), self.ingress_max_message_bytes)

    def resolved_keyring_file(self) -> Path:
        return self.keyring_file or self.state_dir / "keys" / "keyring.json"

    def resolved_audit_log_key_file(self) -> Path:
        return self.audit_log_key_file or self.state_dir / "keys" / "audit-log.key"

    def resolved_recipients_file(self) -> Path:
        return self.recipients_file or self.state_dir / "recipients.yaml"

    def resolved_sms_file(self) -> Path:
        return self.sms_file or self.state_dir / "sms.jsonl"

    def resolved_intake_encryption_keys_file(self) -> Path:
        return self.intake_encryption_keys_file or self.state_dir / "keys" / "intake-encryption.jwks"

    def resolved_network_key_file(self) -> Path:
        return self.network_key_file or self.state_dir / "keys" / "network.key"
