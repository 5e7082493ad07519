"""Instances are spread evenly over 0-based upgrade domains (behaviour 1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleset_operator.planning.domains import spread, upgrade_domain_of


def test_fourteen_instances_over_five_domains_are_three_three_three_three_two() -> None:
    domains = spread(14, 5)
    assert [len(domain) for domain in domains] == [3, 3, 3, 3, 2]
    assert domains[0] == [0, 5, 10]
    assert domains[4] == [4, 9]


def test_upgrade_domains_are_zero_based_round_robin() -> None:
    assert [upgrade_domain_of(ordinal, 5) for ordinal in range(7)] == [0, 1, 2, 3, 4, 0, 1]


def test_domains_without_instances_are_still_listed() -> None:
    assert spread(2, 5) == [[0], [1], [], [], []]
    assert spread(0, 3) == [[], [], []]


def test_single_domain_holds_every_instance() -> None:
    assert spread(4, 1) == [[0, 1, 2, 3]]


@pytest.mark.parametrize(("ordinal", "count"), [(-1, 5), (3, 0)])
def test_impossible_ordinal_or_domain_count_is_refused(ordinal: int, count: int) -> None:
    with pytest.raises(ValueError):
        upgrade_domain_of(ordinal, count)


@given(replicas=st.integers(0, 200), count=st.integers(1, 20))
def test_domain_sizes_differ_by_at_most_one_and_cover_every_instance(replicas: int, count: int) -> None:
    domains = spread(replicas, count)
    sizes = [len(domain) for domain in domains]
    assert len(domains) == count
    assert max(sizes) - min(sizes) <= 1
    assert sorted(ordinal for domain in domains for ordinal in domain) == list(range(replicas))
    # Lower domains get the remainder, so sizes never grow with the index.
    assert sizes == sorted(sizes, reverse=True)
