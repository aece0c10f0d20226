"""The recipients configuration, read from a YAML file (PUNTE_RECIPIENTS_FILE)."""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from runtime.log import get_logger
from services.notification.domain.recipients import Recipients

log = get_logger("notification.recipients")


class RecipientsFileError(ValueError):
    """The file exists but cannot be used: the service refuses to start on it."""


def load(path: Path) -> Recipients:
    """The configuration in ``path``; with no file, nobody is told outside the inbox and the
    delivery topics (logged, so a missing file is not mistaken for a quiet network)."""
    if not path.is_file():
        log.warning("no recipients file: notices reach inboxes and delivery topics only", path=str(path))
        return Recipients()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Recipients.model_validate(raw)
    except (yaml.YAMLError, ValidationError, ValueError) as exc:
        raise RecipientsFileError(f"{path}: {exc}") from exc
