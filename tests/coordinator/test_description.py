"""Descriptions in JDL, JSON and YAML, and the job fields read from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.errors import InvalidDescription, JDLSyntaxError
from coordinator.logic.description import (
    JobFields,
    get_attribute,
    job_fields,
    parse_description,
)
from coordinator.logic.jdl import parse_jdl, to_jdl

EXAMPLES = Path(__file__).parent / "jdl"

MULTICORE_YAML = """\
JobName: mc_production
JobGroup: campaign-2024
Executable: run_simulation.sh
Arguments: "--events 1000 --output 'sim output.root'"
InputSandbox:
  - run_simulation.sh
  - config.yaml
  - LFN:/vo.example.org/user/a/alice/geometry.gdml
OutputSandbox: [std.out, std.err, "*.log"]
Site: [EGI.CPPM.fr, EGI.LAPP.fr, LCG.CERN.ch]
BannedSites: [EGI.LAPP.fr]
Platform: x86_64-el9
Tags: [GPU, "cvmfs:sw.example.org"]
NumberOfProcessors: 8
MaxRAM: 16000
CPUTime: 86400
WallTime: 43200
Priority: 5
Container: /cvmfs/unpacked.example.org/el9:latest
InputData: [/vo.example.org/data/run42.raw]
OutputSE: EXAMPLE-USER
"""

MULTICORE_FIELDS = JobFields(
    executable="run_simulation.sh",
    arguments=["--events", "1000", "--output", "sim output.root"],
    stdout="std.out",
    stderr="std.err",
    input_sandbox=[
        "run_simulation.sh",
        "config.yaml",
        "LFN:/vo.example.org/user/a/alice/geometry.gdml",
    ],
    output_sandbox=["std.out", "std.err", "*.log"],
    job_name="mc_production",
    job_group="campaign-2024",
    site="ANY",
    sites=["EGI.CPPM.fr", "LCG.CERN.ch"],
    banned_sites=["EGI.LAPP.fr"],
    platform="x86_64-el9",
    tags=["GPU", "cvmfs:sw.example.org"],
    cores=8,
    min_cores=8,
    max_cores=8,
    max_ram_mb=16000,
    min_ram_mb=0,
    cpu_time_s=86400,
    wall_time_s=43200,
    priority=5,
    container="/cvmfs/unpacked.example.org/el9:latest",
    gpus=1,  # DIRAC's Tags = {"GPU"}: one GPU
)


def fields(**attributes: Any) -> JobFields:
    return job_fields({"Executable": "/bin/true", **attributes})


def refused(**attributes: Any) -> InvalidDescription:
    with pytest.raises(InvalidDescription) as caught:
        job_fields({"Executable": "/bin/true", **attributes})
    return caught.value


# --- one description, three formats ---------------------------------------------------------


def test_jdl_yaml_and_json_of_the_same_job_give_the_same_fields() -> None:
    from_jdl = parse_description((EXAMPLES / "multicore.jdl").read_text(), "jdl")
    from_yaml = parse_description(MULTICORE_YAML, "yaml")
    from_json = parse_description(json.dumps(from_yaml), "json")
    assert from_jdl == from_yaml == from_json
    assert list(from_jdl) == list(from_yaml) == list(from_json)
    assert job_fields(from_jdl) == job_fields(from_yaml) == job_fields(from_json)
    assert job_fields(from_jdl) == MULTICORE_FIELDS


def test_tutorial_hello_world_fields() -> None:
    description = parse_description((EXAMPLES / "simple.jdl").read_text(), "JDL")
    assert job_fields(description) == JobFields(
        executable="/bin/ls",
        arguments=["-ltr"],
        stdout="StdOut",
        stderr="StdErr",
        input_sandbox=[],
        output_sandbox=["StdOut", "StdErr"],
        job_name="Simple_Job",
        job_group="",
        site="ANY",
        sites=[],
        banned_sites=[],
        platform="",
        tags=[],
        cores=1,
        min_cores=1,
        max_cores=1,
        max_ram_mb=0,
        min_ram_mb=0,
        cpu_time_s=None,
        wall_time_s=None,
        priority=1,
        container="",
    )


def test_format_names_are_case_insensitive_and_yml_is_yaml() -> None:
    assert parse_description("Executable: /bin/ls", "YML") == {"Executable": "/bin/ls"}
    assert parse_description('{"Executable": "/bin/ls"}', "Json") == {"Executable": "/bin/ls"}


def test_jdl_errors_stay_syntax_errors_with_their_position() -> None:
    with pytest.raises(JDLSyntaxError) as caught:
        parse_description('Executable = "/bin/ls', "jdl")
    assert caught.value.details["column"] == 14


@pytest.mark.parametrize(
    ("text", "fmt", "details"),
    [
        ('{"Executable": "/bin/ls",\n "Arguments": }', "json", {"line": 2, "column": 15}),
        ("Executable: /bin/ls\nArguments: [a, b\n", "yaml", {"line": 3, "column": 1}),
        ("Executable: /bin/ls\n  bad: indent\n", "yaml", {"line": 2, "column": 6}),
        ("Executable: a\nexecutable: b\n", "yaml", {"attribute": "executable", "line": 2}),
        ('{"Executable": "a", "EXECUTABLE": "b"}', "json", {"attribute": "EXECUTABLE"}),
        ("- Executable: a\n", "yaml", {"type": "list"}),
        ("", "yaml", {"type": "NoneType"}),
        ('"just text"', "json", {"type": "str"}),
        ("Executable:\n", "yaml", {"attribute": "Executable"}),
        ('{"Executable": null}', "json", {"attribute": "Executable"}),
        ("Executable: x\nEnv: {A: 1}\n", "yaml", {"attribute": "Env"}),
        ('{"Executable": "x", "Args": [[["a"]]]}', "json", {"attribute": "Args"}),
        ('{"Executable": "x", "Cut": NaN}', "json", {"attribute": "Cut"}),
        ("Executable: x\nCut: .inf\n", "yaml", {"attribute": "Cut"}),
        ("Executable: x\nWhen: 2024-01-01\n", "yaml", {"attribute": "When"}),
        ("Executable: x\nBad Name: 1\n", "yaml", {"attribute": "Bad Name"}),
        ("Executable: x\n1: one\n", "yaml", {"attribute": "1"}),
        ('{"N": ' + "9" * 5000 + "}", "json", {}),
        ("Executable: /bin/ls", "toml", {"format": "toml"}),
    ],
)
def test_bad_json_and_yaml_are_refused_with_where_and_what(
    text: str, fmt: str, details: dict[str, Any]
) -> None:
    with pytest.raises(InvalidDescription) as caught:
        parse_description(text, fmt)
    assert details.items() <= caught.value.details.items()


@given(st.text())
def test_any_json_or_yaml_text_is_accepted_as_jdl_able_or_refused_as_invalid(text: str) -> None:
    for fmt in ("json", "yaml"):
        try:
            description = parse_description(text, fmt)
        except InvalidDescription:
            continue
        # Whatever is accepted can be shown as JDL and read back unchanged.
        assert parse_jdl(to_jdl(description)) == description


# --- field extraction -------------------------------------------------------------------------


def test_attribute_lookup_ignores_case_but_prefers_the_exact_spelling() -> None:
    description = {"stdoutput": "lower.out", "CPUTIME": 10}
    assert get_attribute(description, "StdOutput") == "lower.out"
    assert get_attribute(description, "Missing", "dflt") == "dflt"
    assert get_attribute({"site": "a", "Site": "b"}, "Site") == "b"
    assert fields(stdoutput="lower.out", cputime=10).stdout == "lower.out"
    assert fields(CPUTIME="10").cpu_time_s == 10


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ("-ltr", ["-ltr"]),
        ("  a   b  ", ["a", "b"]),
        ("--name 'two words' \"x y\" plain\\ space", ["--name", "two words", "x y", "plain space"]),
        ("", []),
        (["keep as", "is"], ["keep as", "is"]),
        (["-n", 5, True], ["-n", "5", "true"]),
        (42, ["42"]),
    ],
)
def test_arguments_split_like_a_shell(arguments: Any, expected: list[str]) -> None:
    assert fields(Arguments=arguments).arguments == expected


def test_arguments_with_an_open_quote_are_refused() -> None:
    assert refused(Arguments="echo 'oops").details["attribute"] == "Arguments"


def test_a_missing_or_empty_executable_is_refused() -> None:
    for description in ({}, {"Executable": "  "}, {"executable": ""}):
        with pytest.raises(InvalidDescription) as caught:
            job_fields(description)
        assert caught.value.details["attribute"] == "Executable"
    assert refused(Executable=["a", "b"]).details["attribute"] == "Executable"


def test_sandboxes_accept_a_single_string_or_comma_separated_names() -> None:
    assert fields(InputSandbox="job.sh").input_sandbox == ["job.sh"]
    assert fields(InputSandbox="a.sh, b.txt,").input_sandbox == ["a.sh", "b.txt"]
    assert fields(OutputSandbox=["*.root", "std.out", "*.root"]).output_sandbox == [
        "*.root",
        "std.out",
    ]


@pytest.mark.parametrize(
    ("attributes", "site", "sites"),
    [
        ({}, "ANY", []),
        ({"Site": "ANY"}, "ANY", []),
        ({"Site": "LCG.CERN.ch"}, "LCG.CERN.ch", ["LCG.CERN.ch"]),
        ({"Site": ["LCG.CERN.ch"]}, "LCG.CERN.ch", ["LCG.CERN.ch"]),
        ({"Site": "A.x.org, B.y.org"}, "ANY", ["A.x.org", "B.y.org"]),
        ({"Site": ["A", "B"], "BannedSite": "A"}, "B", ["B"]),
        ({"Site": ["A", "any"]}, "ANY", []),
    ],
)
def test_sites_allowed(attributes: dict[str, Any], site: str, sites: list[str]) -> None:
    got = fields(**attributes)
    assert (got.site, got.sites) == (site, sites)


def test_banned_sites_merge_both_spellings() -> None:
    got = fields(BannedSites=["A", "B"], BannedSite="C, A")
    assert got.banned_sites == ["A", "B", "C"]
    assert refused(Site="A", BannedSites=["A"]).details["attribute"] == "BannedSites"


def test_tags_merge_tags_required_tag_and_tag_in_order() -> None:
    got = fields(Tags=["GPU", "8Processors"], RequiredTag="cvmfs:sw.example.org,GPU", Tag="X")
    assert got.tags == ["GPU", "8Processors", "cvmfs:sw.example.org", "X"]


def test_platform_any_means_no_platform_and_only_one_may_be_asked() -> None:
    assert fields(Platform="ANY").platform == ""
    assert fields(Platform=["x86_64-el9"]).platform == "x86_64-el9"
    assert refused(Platform=["el8", "el9"]).details["attribute"] == "Platform"


@pytest.mark.parametrize(
    ("attributes", "cores"),
    [
        ({}, (1, 1, 1)),
        ({"NumberOfProcessors": 4}, (4, 4, 4)),
        ({"NumberOfProcessors": "4"}, (4, 4, 4)),
        ({"NumberOfProcessors": 4.0}, (4, 4, 4)),
        ({"MinNumberOfProcessors": 2}, (2, 2, 2)),
        ({"MinNumberOfProcessors": 2, "MaxNumberOfProcessors": 8}, (2, 2, 8)),
        ({"NumberOfProcessors": 4, "MaxNumberOfProcessors": 8}, (4, 4, 8)),
        ({"NumberOfProcessors": 4, "MinNumberOfProcessors": 2}, (4, 2, 4)),
    ],
)
def test_cores_from_number_of_processors_and_its_bounds(
    attributes: dict[str, Any], cores: tuple[int, int, int]
) -> None:
    got = fields(**attributes)
    assert (got.cores, got.min_cores, got.max_cores) == cores


@pytest.mark.parametrize(
    ("attributes", "attribute"),
    [
        ({"NumberOfProcessors": 0}, "NumberOfProcessors"),
        ({"NumberOfProcessors": -4}, "NumberOfProcessors"),
        ({"NumberOfProcessors": "four"}, "NumberOfProcessors"),
        ({"NumberOfProcessors": 2.5}, "NumberOfProcessors"),
        ({"NumberOfProcessors": True}, "NumberOfProcessors"),
        ({"NumberOfProcessors": [4]}, "NumberOfProcessors"),
        ({"MinNumberOfProcessors": 8, "MaxNumberOfProcessors": 4}, "MinNumberOfProcessors"),
        ({"NumberOfProcessors": 16, "MaxNumberOfProcessors": 8}, "NumberOfProcessors"),
        ({"NumberOfProcessors": 2, "MinNumberOfProcessors": 4}, "NumberOfProcessors"),
        ({"MaxRAM": -1}, "MaxRAM"),
        ({"MaxRAM": 1000, "MinRAM": 2000}, "MinRAM"),
        ({"CPUTime": -5}, "CPUTime"),
        ({"CPUTime": "1h"}, "CPUTime"),
        ({"WallTime": 1.5}, "WallTime"),
        ({"Priority": 11}, "Priority"),
        ({"Priority": -1}, "Priority"),
        ({"JobName": ["a"]}, "JobName"),
        ({"StdOutput": True}, "StdOutput"),
    ],
)
def test_bad_values_are_refused_naming_the_attribute(
    attributes: dict[str, Any], attribute: str
) -> None:
    assert refused(**attributes).details["attribute"] == attribute


def test_memory_time_priority_and_container() -> None:
    got = fields(MaxRAM="2048", MinRAM=1024, MaxCPUTime=300, WallTime="600", Priority=0)
    assert (got.max_ram_mb, got.min_ram_mb) == (2048, 1024)
    assert (got.cpu_time_s, got.wall_time_s, got.priority) == (300, 600, 0)
    assert fields(CPUTime=100, MaxCPUTime=300).cpu_time_s == 100
    assert fields(Image="/images/el9.sif").container == "/images/el9.sif"
    assert fields(Container="a.sif", Image="b.sif").container == "a.sif"


def test_names_and_files_may_be_numbers_as_users_write_them() -> None:
    got = fields(JobName=42, JobGroup=2024, StdOutput="out.txt")
    assert (got.job_name, got.job_group, got.stdout, got.stderr) == (
        "42",
        "2024",
        "out.txt",
        "std.err",
    )


@given(
    st.dictionaries(
        st.sampled_from(
            ["NumberOfProcessors", "MinNumberOfProcessors", "MaxNumberOfProcessors", "MaxRAM"]
        ),
        st.one_of(st.integers(-3, 64), st.text(max_size=3), st.floats(), st.booleans()),
    )
)
def test_fields_are_consistent_or_refused(attributes: dict[str, Any]) -> None:
    try:
        got = fields(**attributes)
    except InvalidDescription as error:
        assert error.details["attribute"] in attributes
        return
    assert 1 <= got.min_cores <= got.cores <= got.max_cores
    assert got.max_ram_mb >= 0


# --- GPUs, whole node, CPU score ------------------------------------------------------------

GPU_JDL = """
Executable = "train.sh";
NumberOfGPUs = 2;
GPUMemoryMB = 40000;
MinGPUCapability = "8.0";
GPUModel = {"A100", "H100"};
WholeNode = "Yes";
MinCPUScore = 12.5;
"""

GPU_YAML = """
Executable: train.sh
NumberOfGPUs: 2
GPUMemoryMB: 40000
MinGPUCapability: "8.0"
GPUModel: [A100, H100]
WholeNode: true
MinCPUScore: 12.5
"""


def test_gpu_requirements_read_alike_in_jdl_yaml_and_json() -> None:
    from_jdl = job_fields(parse_description(GPU_JDL, "jdl"))
    from_yaml = job_fields(parse_description(GPU_YAML, "yaml"))
    from_json = job_fields(
        parse_description(json.dumps(parse_description(GPU_YAML, "yaml")), "json")
    )
    assert from_jdl == from_yaml == from_json
    assert (from_jdl.gpus, from_jdl.gpu_memory_mb, from_jdl.gpu_capability) == (2, 40000, "8.0")
    assert from_jdl.gpu_models == ("A100", "H100")
    assert from_jdl.whole_node and from_jdl.min_cpu_score == 12.5


@pytest.mark.parametrize(
    ("attributes", "gpus"),
    [
        ({}, 0),
        ({"Tags": ["GPU"]}, 1),  # DIRAC's way keeps working
        ({"Tags": "gpu, cvmfs:x"}, 1),
        ({"NumberOfGPUs": "4", "Tags": ["GPU"]}, 4),
        ({"GPUMemoryMB": 16000}, 1),
        ({"MinGPUCapability": "7.5"}, 1),
        ({"GPUModel": "T4"}, 1),
        ({"NumberOfGPUs": 0}, 0),
    ],
)
def test_how_many_gpus_a_job_asks_for(attributes: dict[str, Any], gpus: int) -> None:
    assert fields(**attributes).gpus == gpus


@pytest.mark.parametrize(
    ("value", "whole"),
    [("1", True), ("yes", True), ("Y", True), ("TRUE", True), (True, True), ("no", False),
     ("0", False), (False, False), ("whole", False)],
)  # fmt: skip
def test_whole_node_reads_as_dirac_reads_it(value: Any, whole: bool) -> None:
    assert fields(WholeNode=value).whole_node is whole


def test_bad_gpu_and_score_values_are_refused_naming_the_attribute() -> None:
    assert refused(NumberOfGPUs=-1).details["attribute"] == "NumberOfGPUs"
    assert refused(NumberOfGPUs=5000).details["attribute"] == "NumberOfGPUs"
    assert refused(GPUMemoryMB="lots").details["attribute"] == "GPUMemoryMB"
    assert refused(MinGPUCapability="sm_80").details["attribute"] == "MinGPUCapability"
    assert refused(NumberOfGPUs=0, GPUModel="A100").details["attribute"] == "NumberOfGPUs"
    assert refused(MinCPUScore="fast").details["attribute"] == "MinCPUScore"
    assert refused(MinCPUScore=-3).details["attribute"] == "MinCPUScore"
