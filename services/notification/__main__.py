from runtime.service import serve
from services.notification.bootstrap import SPEC

serve(SPEC)
