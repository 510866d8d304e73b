"""Requirements against offers: the pure matching rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coordinator.logic.matching import (
    Offer,
    Requirements,
    after_taking,
    cores_to_give,
    fits,
    normalise_sites,
    refusal,
)

names = st.text(alphabet="ABCDEFGHIJ.", min_size=1, max_size=6)
offers = st.builds(
    Offer,
    vo=st.just("vo1"),
    site=names,
    platform=st.sampled_from(["", "x86_64-el9", "aarch64-el9"]),
    tags=st.frozensets(names, max_size=4),
    cores_free=st.integers(min_value=1, max_value=128),
    memory_free_mb=st.integers(min_value=0, max_value=10**6),
    time_left_s=st.none() | st.integers(min_value=0, max_value=10**6),
    container_runtimes=st.frozensets(st.sampled_from(["apptainer", "bwrap"])),
)


@given(offer=offers)
def test_a_job_without_requirements_fits_every_offer_of_its_vo(offer: Offer) -> None:
    assert fits(Requirements(vo="vo1"), offer)
    assert refusal(Requirements(vo="vo2"), offer) == "vo"


@given(offer=offers, tags=st.frozensets(names, max_size=4))
def test_tags_must_all_be_offered(offer: Offer, tags: frozenset[str]) -> None:
    assert fits(Requirements(vo="vo1", tags=tags), offer) == (tags <= offer.tags)


@given(offer=offers)
def test_single_core_jobs_fill_exactly_the_free_cores(offer: Offer) -> None:
    job = Requirements(vo="vo1")
    taken = 0
    while fits(job, offer):
        offer = after_taking(offer, job)
        taken += 1
    assert taken >= 1
    assert offer.cores_free == 0


@given(free=st.integers(min_value=1, max_value=64), low=st.integers(1, 8), high=st.integers(8, 32))
def test_core_range_takes_what_is_free_within_bounds(free: int, low: int, high: int) -> None:
    job = Requirements(vo="vo1", cores=low, max_cores=high)
    offer = Offer(vo="vo1", cores_free=free)
    if free < low:
        assert refusal(job, offer) == "cores"
    else:
        assert cores_to_give(job, offer) == min(high, free)


def test_each_refusal_names_its_reason() -> None:
    offer = Offer(
        vo="vo1",
        site="SITE.A",
        platform="x86_64-el9",
        tags=frozenset({"GPU"}),
        cores_free=4,
        memory_free_mb=4000,
        time_left_s=3600,
    )
    cases = {
        "site": Requirements(vo="vo1", sites=frozenset({"SITE.B"})),
        "banned_site": Requirements(vo="vo1", banned_sites=frozenset({"SITE.A"})),
        "platform": Requirements(vo="vo1", platform="aarch64-el9"),
        "tags": Requirements(vo="vo1", tags=frozenset({"GPU", "FPGA"})),
        "cores": Requirements(vo="vo1", cores=8, max_cores=8),
        "memory": Requirements(vo="vo1", max_ram_mb=8000),
        "time_left": Requirements(vo="vo1", wall_time_s=7200),
        "container": Requirements(vo="vo1", container="el9.sif"),
    }
    for reason, job in cases.items():
        assert refusal(job, offer) == reason
    assert fits(Requirements(vo="vo1", platform="X86_64-EL9", max_ram_mb=4000), offer)


def test_unknown_memory_and_time_do_not_refuse() -> None:
    job = Requirements(vo="vo1", max_ram_mb=10**6, cpu_time_s=10**9)
    assert fits(job, Offer(vo="vo1", memory_free_mb=0, time_left_s=None))


def test_site_lists_ignore_any() -> None:
    assert normalise_sites("ANY", []) == frozenset()
    assert normalise_sites("A", ["B", "any"]) == frozenset({"A", "B"})
