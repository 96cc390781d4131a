"""Access and portability packages: the CSV a spreadsheet program opens runs nothing, and says the same
as the JSON beside it."""

from __future__ import annotations

import csv
import io

import pytest

from services.dsar import package


@pytest.mark.parametrize(("cell", "safe"), [
    ('=HYPERLINK("http://evil.example","click")', '\'=HYPERLINK("http://evil.example","click")'),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("\t=1+1", "'\t=1+1"),
    ("+46 70 123 45 67", "+46 70 123 45 67"),  # a phone number stays as it is
    ("-12.5", "-12.5"),
    ("Anna Svensson", "Anna Svensson"),
    ("", ""),
])
def test_a_cell_that_would_run_as_a_formula_is_escaped(cell: str, safe: str) -> None:
    assert package.spreadsheet_safe(cell) == safe


def test_csv_has_one_row_per_value_with_formulas_escaped() -> None:
    fragment = {"system": "support", "records": [{"subject": "u1", "note": "=IMPORTXML(A1)"}], "vip": True}
    rows = list(csv.reader(io.StringIO(package.to_csv(fragment).decode("utf-8-sig"))))
    assert rows == [
        ["field", "value"],
        ["system", "support"],
        ["records[0].subject", "u1"],
        ["records[0].note", "'=IMPORTXML(A1)"],
        ["vip", "true"],
    ]
