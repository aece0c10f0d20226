from contracts.refusals import Refused


class ReportRejected(Refused):
    """A readable, authentic report the rules refuse."""
