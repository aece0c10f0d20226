import sys

from runtime.service import serve
from runtime.settings import Settings
from services.intake.bootstrap import SPEC, MissingSecret, check_secrets

try:
    check_secrets(Settings(service="intake"))
except MissingSecret as missing:
    sys.exit(f"intake does not start: {missing}")
serve(SPEC)
