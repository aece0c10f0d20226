"""The embedded default's state folder: signing keys of every institution and of the
network, the public keyring, intake's encryption keys, the token issuer's key and
accounts. Created once, reused."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.reference import institutions
from punte import recipients
from punte.accounts import Account, new_account, save_accounts
from runtime.signing import Keyring, PublicKey, SigningKey, network_jwks
from services.intake.adapters.report_keys import new_key, write_key_file

if TYPE_CHECKING:
    from runtime.tokens import TokenIssuer


@dataclass(frozen=True)
class State:
    root: Path

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def keyring_file(self) -> Path:
        return self.keys / "keyring.json"

    @property
    def network_public_keys_file(self) -> Path:
        """The network's public signing keys, a JWKS (no secret: readable by anyone)."""
        return self.keys / "network.pub.json"

    @property
    def network_key_file(self) -> Path:
        return self.keys / "network.key"

    @property
    def intake_encryption_keys_file(self) -> Path:
        """Intake's private encryption keys (report v3): the default of
        PUNTE_INTAKE_ENCRYPTION_KEYS_FILE, read by intake alone."""
        return self.keys / "intake-encryption.jwks"

    @property
    def accounts_file(self) -> Path:
        return self.root / "accounts.json"

    @property
    def passwords_file(self) -> Path:
        return self.root / "demo-passwords.json"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def runtime_file(self) -> Path:
        return self.root / "runtime.json"

    @property
    def recipients_file(self) -> Path:
        return self.root / "recipients.yaml"

    @property
    def maildir(self) -> Path:
        """Where the embedded mail server keeps what it received."""
        return self.root / "mail"

    @property
    def sms_file(self) -> Path:
        return self.root / "sms.jsonl"

    def token_issuer(self, url: str) -> TokenIssuer:
        """The embedded identity provider at ``url`` with its own signing key: tokens the
        services verify like any (the operator's machine holds the state folder)."""
        from runtime.tokens import TokenIssuer  # with the services' FastAPI: only when minting

        return TokenIssuer(url, SigningKey.load(self.keys / "identity.key"))

    def institution_key_file(self, institution: str) -> Path:
        return self.keys / "institutions" / f"{institution}.key"

    def institution_key(self, institution: str) -> SigningKey:
        return SigningKey.load(self.institution_key_file(institution))

    def secrets(self) -> dict[str, str]:
        return json.loads(self.secrets_file.read_text())

    def prepare(self) -> "State":
        """Create whatever is missing; existing keys are kept."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        public: list[PublicKey] = []
        since = datetime(2026, 1, 1, tzinfo=timezone.utc)
        for institution in institutions():
            path = self.institution_key_file(institution)
            if not path.exists():
                SigningKey.generate(f"{institution}-1").save(path)
            key = SigningKey.load(path)
            public.append(PublicKey(key.key_id, institution, key.public_raw(), since, None))
        self.keyring_file.write_text(Keyring(public).to_json())
        for name in ("network", "identity", "audit-log"):
            path = self.keys / f"{name}.key"
            if not path.exists():
                SigningKey.generate(f"punte-{name}-1").save(path)
        # What every service serves at /.well-known/punte-network-keys.json, for receivers
        # working beside the embedded network's files.
        network = network_jwks(SigningKey.load(self.keys / "network.key"), Keyring([]))
        self.network_public_keys_file.write_text(json.dumps(network, indent=1))
        if not self.intake_encryption_keys_file.exists():
            write_key_file(self.intake_encryption_keys_file, [new_key("intake-enc-1")])
        if not self.secrets_file.exists():
            self.secrets_file.write_text(json.dumps({
                "pseudonym_key": secrets.token_hex(32),
                "identity_keys": f"id-1:{secrets.token_hex(32)}",
            }))
            self.secrets_file.chmod(0o600)
        # Each service wraps its data keys (runtime.sealing) under its own KEK; a state
        # folder made before they existed gets them too.
        stored = self.secrets()
        if "data_keys" not in stored:
            stored["data_keys"] = {name: f"dk-1:{secrets.token_hex(32)}"
                                   for name in ("intake", "referral", "notification", "audit")}
            self.secrets_file.write_text(json.dumps(stored))
            self.secrets_file.chmod(0o600)
        if not self.accounts_file.exists():
            self._create_accounts()
        if not self.recipients_file.exists():
            recipients.write(self.recipients_file, recipients.demo_recipients(institutions().values()))
        return self

    def _create_accounts(self) -> None:
        accounts: list[Account] = []
        passwords: dict[str, str] = {}
        for institution in institutions().values():
            # A case manager of the institution, and its own system (client credentials).
            for username, roles, name in (
                (f"cm.{institution.id}", ["case-manager"], f"Manager de caz {institution.name}"),
                (f"sys.{institution.id}", ["institution-system"], f"Sistemul {institution.name}"),
                # Its data-protection officer: the person's requests (GDPR art. 15-18).
                (f"dpo.{institution.id}", ["privacy-officer"], f"Responsabil protecția datelor {institution.name}"),
            ):
                account, password = new_account(username, institution.id, roles, name)
                accounts.append(account)
                passwords[account.username] = password
        for username, roles in (("auditor", ["auditor"]), ("operator", ["operator"])):
            account, password = new_account(username, None, roles, username.capitalize())
            accounts.append(account)
            passwords[username] = password
        save_accounts(self.accounts_file, accounts)
        self.passwords_file.write_text(json.dumps(passwords, indent=1))
        self.passwords_file.chmod(0o600)
