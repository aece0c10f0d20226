"""The service directory as Open Referral HSDS 3.0 (Human Services Data Specification):
each service in full, as HSDS's ``GET /services/{id}`` gives it (compiled ``service``
schema), with its provider institution as the ``organization``, where it is (the seed's
address) as a ``service_at_location``, the provider's county as its ``service_area``, and
what HSDS has no field for (risk categories, the nomenclature code, places, waiting list,
whether it takes referrals) as ``attributes`` on taxonomy terms; all in one HSDS ``Page``.

HSDS wants UUIDs: each is derived from the Punte id (uuid5 under ``NAMESPACE``), so it is
the same in every export. An address goes out as the location's description, not as an
HSDS ``address``: HSDS requires a postal code there, which the directory does not have.
Pure: the live rows, the seed and the reference data come in as arguments."""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from contracts.reference import County, Institution, RiskCategory, SocialService

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://punte.ro/hsds")
RISK_TAXONOMY = "Punte risk categories (contracts/reference/risk-categories.yaml)"
NOMENCLATURE_TAXONOMY = "Nomenclatorul serviciilor sociale (HG 867/2015)"
DIRECTORY_TAXONOMY = "Punte service directory (ro.punte.service.updated.v1)"
# The directory's own facts, as attributes with a value.
FACTS = {
    "punte-service-id": ("Identificator Punte", "The service's id in Punte's directory (service_id)"),
    "capacity": ("Capacitate (locuri)", "Places the service has"),
    "occupancy": ("Locuri ocupate", "Places taken"),
    "waiting": ("Listă de așteptare", "People on the waiting list"),
    "accepting": ("Primește trimiteri", "Whether the service takes new referrals (true or false)"),
}


def uid(kind: str, key: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}/{key}"))


def _term(taxonomy: str, code: str, name: str, description: str) -> dict[str, Any]:
    return {"id": uid("taxonomy_term", f"{taxonomy}/{code}"), "code": code, "name": name,
            "description": description, "taxonomy": taxonomy}


def _attribute(service_uid: str, term: dict[str, Any], value: str | None = None) -> dict[str, Any]:
    return {"id": uid("attribute", f"{service_uid}/{term['id']}"), "link_id": service_uid,
            "link_type": "service", "link_entity": "service", "taxonomy_term_id": term["id"],
            "taxonomy_term": term, **({"value": value} if value is not None else {})}


def organization(institution: Institution, counties: Mapping[str, County]) -> dict[str, Any]:
    org = uid("organization", institution.id)
    county = counties.get(institution.county)
    where = f"județul {county.name}" if county else institution.county
    return {
        "id": org, "name": institution.name,
        "description": f"{institution.kind}, {'nivel județean' if institution.level == 'county' else 'nivel local'}, "
                       f"{where}",
        "organization_identifiers": [{"id": uid("organization_identifier", institution.id), "organization_id": org,
                                      "identifier_type": "Punte institution id", "identifier": institution.id}],
    }


def service(row: Mapping[str, Any], seed: SocialService | None, provider: Institution | None,
            counties: Mapping[str, County], categories: Mapping[str, RiskCategory]) -> dict[str, Any]:
    """One directory row (``services`` table) as an HSDS 3.0 service."""
    sid = uid("service", row["service_id"])
    if row["accepting"]:
        status = "active"
    elif seed is not None and seed.status == "proposed":
        status = "inactive"  # planned in the county's strategy, not running yet
    else:
        status = "temporarily closed"  # running, but takes no referrals now
    updated: datetime | str = row["updated_at"]
    out: dict[str, Any] = {
        "id": sid, "name": row["name"], "status": status,
        "last_modified": updated if isinstance(updated, str) else updated.isoformat(),
    }
    if seed is not None and seed.beneficiaries:
        out["description"] = seed.beneficiaries
    if provider is not None:
        org = organization(provider, counties)
        out["organization_id"], out["organization"] = org["id"], org
        county = counties.get(provider.county)
        if county is not None:
            out["service_areas"] = [{"id": uid("service_area", row["service_id"]), "service_id": sid,
                                     "name": f"Județul {county.name}"}]
    if seed is not None and seed.address:
        location = uid("location", row["service_id"])
        out["service_at_locations"] = [{
            "id": uid("service_at_location", row["service_id"]), "service_id": sid, "location_id": location,
            "location": {"id": location, "location_type": "physical", "name": row["name"],
                         "description": seed.address,
                         **({"organization_id": out["organization_id"]} if provider is not None else {})}}]
    attributes = [_attribute(sid, _term(DIRECTORY_TAXONOMY, "punte-service-id", *FACTS["punte-service-id"]),
                             row["service_id"])]
    for code in row["categories"]:
        category = categories.get(code)
        attributes.append(_attribute(sid, _term(RISK_TAXONOMY, code, category.label_ro if category else code,
                                                category.label_en if category else code)))
    if row.get("nomenclature_code"):
        code = row["nomenclature_code"]
        attributes.append(_attribute(sid, _term(NOMENCLATURE_TAXONOMY, code, code, NOMENCLATURE_TAXONOMY)))
    for fact in ("capacity", "occupancy", "waiting"):
        if row.get(fact) is not None:
            attributes.append(_attribute(sid, _term(DIRECTORY_TAXONOMY, fact, *FACTS[fact]), str(row[fact])))
    attributes.append(_attribute(sid, _term(DIRECTORY_TAXONOMY, "accepting", *FACTS["accepting"]),
                                 "true" if row["accepting"] else "false"))
    out["attributes"] = attributes
    return out


def page(rows: Iterable[Mapping[str, Any]], seeds: Mapping[str, SocialService],
         institutions: Mapping[str, Institution], counties: Mapping[str, County],
         categories: Mapping[str, RiskCategory]) -> dict[str, Any]:
    """The whole directory as one HSDS 3.0 ``Page`` of services, ordered by Punte id."""
    contents = [service(r, seeds.get(r["service_id"]), institutions.get(r["provider"]), counties, categories)
                for r in sorted(rows, key=lambda r: r["service_id"])]
    return {"total_items": len(contents), "total_pages": 1, "page_number": 1, "size": len(contents),
            "first_page": True, "last_page": True, "empty": not contents, "contents": contents}
