"""Upgrade domains: which domain an instance belongs to and how a fleet spreads over them."""

from __future__ import annotations


def upgrade_domain_of(ordinal: int, upgrade_domain_count: int) -> int:
    """The 0-based upgrade domain of instance `ordinal`: round-robin, so domains stay even as the fleet grows."""
    if ordinal < 0:
        raise ValueError(f"ordinal must not be negative, got {ordinal}")
    if upgrade_domain_count < 1:
        raise ValueError(f"upgradeDomainCount must be at least 1, got {upgrade_domain_count}")
    return ordinal % upgrade_domain_count


def spread(replicas: int, upgrade_domain_count: int) -> list[list[int]]:
    """Ordinals of each upgrade domain, index = domain: 14 instances over 5 domains are 3, 3, 3, 3, 2.

    Every domain is listed, empty ones too, so a caller can show a domain that holds no instance yet.
    """
    if replicas < 0:
        raise ValueError(f"replicas must not be negative, got {replicas}")
    if upgrade_domain_count < 1:
        raise ValueError(f"upgradeDomainCount must be at least 1, got {upgrade_domain_count}")
    domains: list[list[int]] = [[] for _ in range(upgrade_domain_count)]
    for ordinal in range(replicas):
        domains[upgrade_domain_of(ordinal, upgrade_domain_count)].append(ordinal)
    return domains
