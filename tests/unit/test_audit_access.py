"""The audit CSV export as a spreadsheet opens it: a cell that starts with = + - @, a tab
or a carriage return would be run as a formula (CSV injection); it is prefixed with a
single quote, as OWASP advises, and everything else is left as it was."""
from __future__ import annotations

import pytest

from services.audit.domain.spreadsheet import safe_cell


@pytest.mark.parametrize("value", ["=1+1", "+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1",
                                   "=HYPERLINK(\"http://example.invalid\")"])
def test_a_cell_a_spreadsheet_would_run_is_quoted(value):
    assert safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["case-1", "ro.punte.case.opened.v1", "", "2026-11-23T09:00:00+00:00",
                                   "a=b", "'=already quoted", 0, -5, 12, None])
def test_other_cells_are_left_as_they_are(value):
    assert safe_cell(value) == value
