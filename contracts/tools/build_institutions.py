"""Build contracts/reference/institutions.csv from contracts/reference/uat.csv and
contracts/reference/counties.csv.

Every UAT has a public social assistance service (the DAS in Bacău municipality, an SPAS
elsewhere); a served county (one with UATs in uat.csv, today Bacău) has one DGASPC, DSP,
ISJ, CJRAE and IPJ; local police exist in the municipalities and towns. Every other county
gets its DGASPC only, so a report about a child living outside Bacău can reach the DGASPC
that must receive it (Law 272/2004 art. 89). Run from anywhere:

    python contracts/tools/build_institutions.py

The output is committed; tests/unit/test_reference.py checks it is up to date.
"""
from __future__ import annotations

import csv
import io
import re
import unicodedata
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent.parent / "reference"
UAT_CSV = REFERENCE / "uat.csv"
COUNTIES_CSV = REFERENCE / "counties.csv"
INSTITUTIONS_CSV = REFERENCE / "institutions.csv"

COLUMNS = ["id", "kind", "name", "level", "county", "siruta"]
COUNTY_SEAT_SIRUTA = 20297  # Bacău municipality: its service is the DAS, not an SPAS
COUNTY_INSTITUTIONS = [  # one of each per served county; full names in docs/contracts.md
    "DGASPC", "DSP", "ISJ", "CJRAE", "IPJ",
]
POLICE_KINDS = {"county-seat-municipality", "municipality", "town"}

_FOLD = str.maketrans({"ă": "a", "â": "a", "î": "i", "ș": "s", "ş": "s", "ț": "t", "ţ": "t"})
_LOWER_WORDS = {"cel", "de", "din", "lui"}  # kept lower-case inside names (Ștefan cel Mare)


def slug(name: str) -> str:
    """Lower-case ASCII slug: diacritics folded, any other character run becomes '-'."""
    text = name.lower().translate(_FOLD)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def display_name(name: str) -> str:
    """Title case keeping diacritics: 'ȘTEFAN CEL MARE' -> 'Ștefan cel Mare'."""
    words = name.lower().split(" ")
    shown = []
    for index, word in enumerate(words):
        if index > 0 and word in _LOWER_WORDS:
            shown.append(word)
        else:
            shown.append("-".join(part[:1].upper() + part[1:] for part in word.split("-")))
    return " ".join(shown)


def read_counties() -> dict[str, str]:
    """County code -> name (with diacritics), from counties.csv."""
    with COUNTIES_CSV.open(encoding="utf-8", newline="") as handle:
        return {row["code"]: row["name"] for row in csv.DictReader(handle)}


def build_rows(uats: list[dict[str, str]], county_names: dict[str, str] | None = None) -> list[dict[str, str]]:
    county_names = read_counties() if county_names is None else county_names
    rows: list[dict[str, str]] = []
    served = sorted({uat["county"] for uat in uats})
    for county in served:
        county_name = county_names[county]
        for kind in COUNTY_INSTITUTIONS:
            rows.append({
                "id": f"{kind.lower()}-{county.lower()}", "kind": kind,
                "name": f"{kind} {county_name}", "level": "county", "county": county, "siruta": "",
            })
    for uat in uats:
        siruta = int(uat["siruta"])
        name = display_name(uat["name"])
        kind = "DAS" if siruta == COUNTY_SEAT_SIRUTA else "SPAS"
        rows.append({
            "id": f"{kind.lower()}-{slug(uat['name'])}", "kind": kind, "name": f"{kind} {name}",
            "level": "local", "county": uat["county"], "siruta": str(siruta),
        })
    for uat in uats:
        if uat["kind"] in POLICE_KINDS:
            rows.append({
                "id": f"pl-{slug(uat['name'])}", "kind": "PL",
                "name": f"Poliția Locală {display_name(uat['name'])}", "level": "local",
                "county": uat["county"], "siruta": uat["siruta"],
            })
    for county, county_name in sorted(county_names.items()):
        if county in served:
            continue
        # Bucharest (B) has no municipal DGASPC: each of its six sectors has one (DGASPC
        # Sector 1..6, HG 1434/2004). `dgaspc-b` stands for them until the sectors join the
        # network; a report about a child in Bucharest must then go to the sector's DGASPC.
        rows.append({
            "id": f"dgaspc-{county.lower()}", "kind": "DGASPC", "name": f"DGASPC {county_name}",
            "level": "county", "county": county, "siruta": "",
        })
    ids = [row["id"] for row in rows]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"duplicate institution ids: {duplicates}")
    return rows


def render(rows: list[dict[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main() -> None:
    with UAT_CSV.open(encoding="utf-8", newline="") as handle:
        uats = list(csv.DictReader(handle))
    INSTITUTIONS_CSV.write_text(render(build_rows(uats)), encoding="utf-8")
    print(f"wrote {INSTITUTIONS_CSV}")


if __name__ == "__main__":
    main()
