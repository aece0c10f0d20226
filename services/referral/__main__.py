from runtime.service import serve
from services.referral.bootstrap import SPEC

serve(SPEC)
