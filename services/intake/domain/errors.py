class ReportRejected(Exception):
    """A readable, authentic report the rules refuse; ``code`` is from the catalogue."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
