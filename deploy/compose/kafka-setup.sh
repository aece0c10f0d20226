#!/bin/sh
# compose.yaml's one-shot kafka-setup: the declaration of contracts/kafka_acls.py made true on
# the cluster (`punte kafka apply`: topics, a SCRAM credential per institution and service,
# ACLs), then the broker's epoch claimed (`punte replay --bootstrap`, decision 0026). The
# services' passwords are the operator's (deploy/.env); the institutions' are generated and
# kept in the kafka-setup volume (/var/lib/punte/kafka-credentials.json, 0600), to hand to each
# institution. Run again, it changes nothing.
set -eu
python - <<'PY'
import json, os
from pathlib import Path
from punte.kafka_admin import load_credentials, save_credentials
path = Path("/var/lib/punte/kafka-credentials.json")
credentials = load_credentials(path)
for service in ("intake", "referral", "notification", "audit"):
    credentials[f"punte-{service}"] = os.environ[f"PUNTE_{service.upper()}_KAFKA_PASSWORD"]
save_credentials(path, credentials)
PY
punte kafka apply --credentials /var/lib/punte/kafka-credentials.json
punte replay --bootstrap "$PUNTE_KAFKA_BOOTSTRAP" --state-dir /var/lib/punte/replay
