from runtime.service import serve
from services.audit.bootstrap import SPEC

serve(SPEC)
