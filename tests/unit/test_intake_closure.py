"""Which identity versions of a child go when one of the child's cases is erased (ADR 0018)."""
from services.intake.domain.closure import IdentityVersion, identity_versions_to_erase

VERSIONS = [IdentityVersion(1, None), IdentityVersion(2, "r-a"), IdentityVersion(3, "r-b"), IdentityVersion(4, "r-a2")]


def test_the_last_case_of_a_child_takes_every_version():
    assert identity_versions_to_erase(VERSIONS, {"r-a"}, child_has_another_case=False) == [1, 2, 3, 4]


def test_another_case_keeps_its_own_accounts_and_the_current_identity():
    assert identity_versions_to_erase(VERSIONS, {"r-a", "r-a2"}, child_has_another_case=True) == [2]


def test_a_child_without_versions_loses_nothing():
    assert identity_versions_to_erase([], {"r-a"}, child_has_another_case=True) == []
