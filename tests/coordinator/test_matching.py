"""Requirements against offers: the pure matching rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from coordinator.logic.matching import (
    CHECKS,
    Offer,
    Requirements,
    after_taking,
    cores_to_give,
    failures,
    fits,
    gpus_for,
    normalise_sites,
    policy_choice,
    refusal,
    wider_job_cores,
)
from protocol import REQUIREMENTS, GpuInfo

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
        gpus=(),
    )
    cases = {
        "site": Requirements(vo="vo1", sites=frozenset({"SITE.B"})),
        "banned_sites": Requirements(vo="vo1", banned_sites=frozenset({"SITE.A"})),
        "platform": Requirements(vo="vo1", platform="aarch64-el9"),
        "tags": Requirements(vo="vo1", tags=frozenset({"GPU", "FPGA"})),
        "cores": Requirements(vo="vo1", cores=8, max_cores=8),
        "memory": Requirements(vo="vo1", max_ram_mb=8000),
        "gpus": Requirements(vo="vo1", gpus=1, gpu_memory_mb=1),
        "cpu_time": Requirements(vo="vo1", wall_time_s=7200),
        "cpu_score": Requirements(vo="vo1", min_cpu_score=10.0),
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


A100 = [GpuInfo(str(i), "nvidia", "NVIDIA A100-SXM4-80GB", 81920, "8.0") for i in (0, 1)]
T4 = [GpuInfo(str(i), "nvidia", "Tesla T4", 15360, "7.5") for i in (2, 3)]
NODE = tuple(A100 + T4)
gpu_lists = st.none() | st.lists(st.sampled_from(NODE), unique=True).map(tuple)
jobs = st.builds(
    Requirements,
    vo=st.sampled_from(["vo1", "vo2"]),
    sites=st.frozensets(names, max_size=2),
    banned_sites=st.frozensets(names, max_size=2),
    platform=st.sampled_from(["", "x86_64-el9", "aarch64-el9"]),
    tags=st.frozensets(names | st.just("GPU"), max_size=2),
    cores=st.integers(1, 16),
    max_cores=st.integers(1, 32),
    max_ram_mb=st.integers(0, 10**6),
    cpu_time_s=st.none() | st.integers(0, 10**6),
    wall_time_s=st.none() | st.integers(0, 10**6),
    container=st.sampled_from(["", "el9.sif"]),
    gpus=st.integers(0, 3),
    gpu_memory_mb=st.sampled_from([0, 16000, 40000]),
    gpu_capability=st.sampled_from(["", "7.0", "8.0", "9.0"]),
    gpu_models=st.frozensets(st.sampled_from(["A100", "t4", "H100"]), max_size=1),
    whole_node=st.booleans(),
    min_cpu_score=st.sampled_from([0.0, 10.0]),
)
node_offers = st.builds(
    Offer,
    vo=st.just("vo1"),
    site=names,
    platform=st.sampled_from(["", "x86_64-el9"]),
    tags=st.frozensets(names | st.just("GPU"), max_size=4),
    cores_free=st.integers(0, 32),
    memory_free_mb=st.integers(0, 10**6),
    time_left_s=st.none() | st.integers(0, 10**6),
    container_runtimes=st.frozensets(st.sampled_from(["apptainer", "bwrap"])),
    cores_total=st.integers(0, 32),
    gpus=gpu_lists,
    cpu_score=st.sampled_from([0.0, 5.0, 50.0]),
    min_cores=st.integers(0, 4),
)


@given(job=jobs, offer=node_offers)
def test_the_fast_refusal_and_the_explained_failures_agree(job: Requirements, offer: Offer) -> None:
    """``refusal`` (the match path) and ``failures`` (explanations) state the same rules."""
    found = failures(job, offer)
    assert refusal(job, offer) == (found[0] if found else "")
    assert [name for name, _ in CHECKS] == list(REQUIREMENTS)


def test_gpus_meet_memory_capability_and_model_with_at_least_semantics() -> None:
    offer = Offer(vo="vo1", gpus=NODE, cores_free=8)

    def ids(job: Requirements) -> list[str] | None:
        got = gpus_for(job, offer)
        return None if got is None else [gpu.id for gpu in got]

    # The least capable GPUs that do are given: the A100s stay for jobs that need them.
    assert ids(Requirements(vo="vo1", gpus=1)) == ["2"]
    assert ids(Requirements(vo="vo1", gpus=2, gpu_memory_mb=15360)) == ["2", "3"]
    assert ids(Requirements(vo="vo1", gpus=1, gpu_memory_mb=40000)) == ["0"]
    assert ids(Requirements(vo="vo1", gpus=2, gpu_capability="8.0")) == ["0", "1"]
    assert ids(Requirements(vo="vo1", gpus=1, gpu_capability="7.5")) == ["2"]
    assert ids(Requirements(vo="vo1", gpus=1, gpu_capability="8.6")) is None
    assert ids(Requirements(vo="vo1", gpus=1, gpu_models=frozenset({"a100"}))) == ["0"]
    assert ids(Requirements(vo="vo1", gpus=3, gpu_memory_mb=40000)) is None
    # Three GPUs: no model has three, so the three least capable of any model.
    assert ids(Requirements(vo="vo1", gpus=3)) == ["2", "3", "0"]
    assert refusal(Requirements(vo="vo1", gpus=5), offer) == "gpus"
    taken = gpus_for(Requirements(vo="vo1", gpus=2, gpu_capability="8.0"), offer) or ()
    left = after_taking(offer, Requirements(vo="vo1", gpus=2), taken)
    assert [gpu.id for gpu in left.gpus or ()] == ["2", "3"]
    assert refusal(Requirements(vo="vo1", gpus=1, gpu_memory_mb=40000), left) == "gpus"


def test_a_pilot_that_does_not_count_gpus_is_matched_on_the_tag() -> None:
    job = Requirements(vo="vo1", gpus=1, tags=frozenset({"GPU"}))
    assert fits(job, Offer(vo="vo1", tags=frozenset({"GPU"}), gpus=None))
    assert refusal(Requirements(vo="vo1", gpus=1), Offer(vo="vo1", gpus=None)) == "gpus"
    assert refusal(Requirements(vo="vo1", gpus=1), Offer(vo="vo1", gpus=())) == "gpus"
    assert fits(Requirements(vo="vo1"), Offer(vo="vo1", gpus=()))


def test_whole_node_jobs_take_an_empty_node_and_all_its_cores() -> None:
    job = Requirements(vo="vo1", whole_node=True)
    empty = Offer(vo="vo1", cores_free=16, cores_total=16)
    assert fits(job, empty) and cores_to_give(job, empty) == 16
    assert refusal(job, Offer(vo="vo1", cores_free=15, cores_total=16)) == "cores"
    assert refusal(Requirements(vo="vo1", whole_node=True, cores=32), empty) == "cores"
    assert after_taking(empty, job).cores_free == 0


def test_min_cores_keeps_narrower_jobs_away() -> None:
    offer = Offer(vo="vo1", cores_free=8, cores_total=8, min_cores=4)
    assert refusal(Requirements(vo="vo1"), offer) == "cores"
    assert fits(Requirements(vo="vo1", cores=4, max_cores=4), offer)
    assert fits(Requirements(vo="vo1", cores=1, max_cores=8), offer)  # takes all 8


def test_slot_policies_choose_among_the_fitting_queues() -> None:
    one = Requirements(vo="vo1")
    two = Requirements(vo="vo1", cores=2, max_cores=2)
    four = Requirements(vo="vo1", cores=4, max_cores=4)
    whole = Requirements(vo="vo1", whole_node=True)
    queues = [("one", one), ("two", two), ("four", four), ("whole", whole)]
    empty = Offer(vo="vo1", cores_free=4, cores_total=4)

    def chosen(policy: str, offer: Offer) -> list[str]:
        fitting = [(name, needs) for name, needs in queues if fits(needs, offer)]
        return [name for name, _ in policy_choice(fitting, offer, policy)]

    assert chosen("whole_node_first", empty) == ["whole"]
    assert chosen("smallest_first", empty) == ["one"]
    assert chosen("", empty) == ["one", "two", "four", "whole"]
    half = Offer(vo="vo1", cores_free=2, cores_total=4)
    assert chosen("whole_node_first", half) == ["two"]  # exactly the free cores
    three = Offer(vo="vo1", cores_free=3, cores_total=4)
    assert chosen("whole_node_first", three) == ["two"]  # multi-core before single
    assert chosen("whole_node_first", Offer(vo="vo1", cores_free=1, cores_total=4)) == ["one"]


def test_wider_jobs_that_would_fit_the_node_are_reported() -> None:
    needs = [
        Requirements(vo="vo1"),
        Requirements(vo="vo1", cores=4, max_cores=4),
        Requirements(vo="vo1", cores=3, max_cores=3),
        Requirements(vo="vo1", cores=32, max_cores=32),  # fits no node here
        Requirements(vo="vo1", cores=2, max_cores=2, platform="aarch64-el9"),
    ]
    busy = Offer(vo="vo1", platform="x86_64-el9", cores_free=1, cores_total=8)
    assert wider_job_cores(needs, busy) == 3
    assert wider_job_cores([Requirements(vo="vo1", whole_node=True)], busy) == 8
    assert wider_job_cores(needs, Offer(vo="vo1", cores_free=8, cores_total=8)) == 0
    assert wider_job_cores(needs[:1], busy) == 0
    # Just given 1-core jobs, nothing free: other 1-core jobs are no wider than those.
    full = Offer(vo="vo1", platform="x86_64-el9", cores_free=0, cores_total=8)
    assert wider_job_cores(needs, full, given_cores=1) == 3
    assert wider_job_cores(needs, full, given_cores=4) == 0
