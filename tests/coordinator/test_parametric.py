"""Parametric job expansion with DIRAC's semantics, and %j substitution."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.errors import InvalidDescription
from coordinator.logic.jdl import parse_jdl
from coordinator.logic.parametric import expand, is_parametric, substitute_job_id

EXAMPLES = Path(__file__).parent / "jdl"


def arguments_of(jdl: str) -> list[Any]:
    return [job["Arguments"] for job in expand(parse_jdl(jdl))]


# DIRAC's own expectations for these descriptions: values, start/step/factor, named sequences.
@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ('Parameters = { "a", "b", "c" };', ["a", "b", "c"]),
        ("Parameters = 3; ParameterStart = 5;", ["5", "5", "5"]),
        ("Parameters = 3;", ["1", "1", "1"]),
        (
            "Parameters = 3; ParameterStart = 1; ParameterStep = 1; ParameterFactor = 2;",
            ["1", "3", "7"],
        ),
        ("Parameters = 3; ParameterStart = 0.; ParameterStep = 0.5;", ["0.0", "0.5", "1.0"]),
        ("Parameters = 2; ParameterStart = 1; ParameterFactor = 1.5;", ["1.0", "1.5"]),
        ('Parameters = "2"; ParameterStart = "10"; ParameterStep = "-3";', ["10", "7"]),
        ("parameters = 2; parameterstart = 4; PARAMETERSTEP = 4;", ["4", "8"]),
        ("Parameters = {1, 2.5, true};", ["1", "2.5", "true"]),
    ],
)
def test_parameter_values_fill_percent_s(parameters: str, expected: list[str]) -> None:
    jdl = f'Executable = "my_executable"; Arguments = "%s"; JobName = "Test_%n"; {parameters}'
    jobs = expand(parse_jdl(jdl))
    assert [job["Arguments"] for job in jobs] == expected
    assert [job["JobName"] for job in jobs] == [f"Test_{i}" for i in range(len(expected))]


def test_named_sequences_run_alongside_each_other() -> None:
    jobs = expand(parse_jdl((EXAMPLES / "multi_parameter.jdl").read_text()))
    assert [job["Arguments"] for job in jobs] == [
        "--energy 1 --particle electron",
        "--energy 3 --particle muon",
        "--energy 7 --particle pion",
    ]
    assert [(job["Parameter.E"], job["Parameter.P"]) for job in jobs] == [
        (1, "electron"),
        (3, "muon"),
        (7, "pion"),
    ]


def test_tutorial_parametric_job_gives_three_jobs_with_their_index() -> None:
    description = parse_jdl((EXAMPLES / "parametric.jdl").read_text())
    assert is_parametric(description)
    jobs = expand(description)
    assert jobs == [
        {
            "JobName": f"Param_{n}",
            "Executable": "/bin/echo",
            "Arguments": f"value {n} of job {n}",
            "StdOutput": f"std_{n}.out",
            "StdError": "std.err",
            "OutputSandbox": [f"std_{n}.out", "std.err"],
            "Parameter": n,
            "ParameterNumber": n,
        }
        for n in range(3)
    ]


def test_list_values_reach_list_items_such_as_the_input_sandbox() -> None:
    jobs = expand(parse_jdl((EXAMPLES / "parametric_list.jdl").read_text()))
    assert [job["InputSandbox"] for job in jobs] == [
        ["analyse.sh", "run001.dat"],
        ["analyse.sh", "run002.dat"],
        ["analyse.sh", "run003.dat"],
    ]
    assert jobs[2]["Arguments"] == "--input run003.dat --seed 2"
    assert jobs[2]["OutputSandbox"] == ["result_2.root", "std.out", "std.err"]
    assert jobs[2]["JobName"] == "analyse_run003.dat"


def test_index_is_zero_padded_to_the_width_of_the_last_index() -> None:
    jobs = expand({"Executable": "x", "JobName": "job_%n", "Parameters": 11})
    assert [job["JobName"] for job in jobs][:2] == ["job_00", "job_01"]
    assert jobs[-1]["JobName"] == "job_10"
    assert [job["ParameterNumber"] for job in jobs] == list(range(11))


def test_parameter_attributes_are_replaced_by_the_job_values() -> None:
    description = {
        "Executable": "x",
        "Parameters": 2,
        "ParameterStart": 3,
        "ParameterStep": 1,
        "Parameter": "stale",
        "ParameterNumber": 99,
    }
    assert expand(description) == [
        {"Executable": "x", "Parameter": 3, "ParameterNumber": 0},
        {"Executable": "x", "Parameter": 4, "ParameterNumber": 1},
    ]


def test_unknown_placeholders_and_non_strings_are_left_alone() -> None:
    jobs = expand(
        {
            "Executable": "x",
            "Arguments": "%(Z)s %d 100% %j",
            "CPUTime": 100,
            "Tags": ["GPU", 8],
            "Parameters": ["v"],
        }
    )
    assert jobs == [
        {
            "Executable": "x",
            "Arguments": "%(Z)s %d 100% %j",
            "CPUTime": 100,
            "Tags": ["GPU", 8],
            "Parameter": "v",
            "ParameterNumber": 0,
        }
    ]


def test_a_value_is_not_substituted_again() -> None:
    jobs = expand({"Executable": "x", "Arguments": "%s", "Parameters": ["%n", "%(A)s"]})
    assert [job["Arguments"] for job in jobs] == ["%n", "%(A)s"]


def test_a_plain_description_is_one_job_and_keeps_its_placeholders() -> None:
    description = {"Executable": "x", "JobName": "job_%n", "Arguments": "%s", "ParameterStart": 2}
    assert not is_parametric(description)
    assert expand(description) == [description]


def test_expansion_leaves_the_input_alone_and_jobs_do_not_share_lists() -> None:
    description = {"Executable": "x", "OutputSandbox": ["a"], "Parameters": 2}
    before = copy.deepcopy(description)
    jobs = expand(description)
    jobs[0]["OutputSandbox"].append("b")
    assert jobs[1]["OutputSandbox"] == ["a"]
    assert description == before


@pytest.mark.parametrize(
    ("description", "attribute"),
    [
        ({"Parameters": 0}, "Parameters"),
        ({"Parameters": -2}, "Parameters"),
        ({"Parameters": []}, "Parameters"),
        ({"Parameters": "many"}, "Parameters"),
        ({"Parameters": 2.5}, "Parameters"),
        ({"Parameters": True}, "Parameters"),
        ({"Parameters": 3, "Parameters.B": ["a", "b"]}, "Parameters.B"),
        ({"Parameters": 3, "Parameters.B": 3}, "Parameters.B"),
        ({"Parameters": 3, "ParameterStart": "one"}, "ParameterStart"),
        ({"Parameters": 3, "ParameterStep.A": [1]}, "ParameterStep.A"),
        ({"Parameters": 3, "ParameterStart": 2**70}, "ParameterStart"),
        ({"Parameters": 100, "ParameterStart": 2, "ParameterFactor": 10}, "ParameterFactor"),
        ({"Parameters": 100, "ParameterStart": 2.0, "ParameterFactor": 1e300}, "ParameterFactor"),
    ],
)
def test_inconsistent_parameters_are_refused_naming_the_attribute(
    description: dict[str, Any], attribute: str
) -> None:
    with pytest.raises(InvalidDescription) as caught:
        expand({"Executable": "x", **description})
    assert caught.value.details["attribute"] == attribute


def test_too_many_jobs_are_refused_before_any_is_built() -> None:
    assert len(expand({"Executable": "x", "Parameters": 5}, max_jobs=5)) == 5
    with pytest.raises(InvalidDescription) as caught:
        expand({"Executable": "x", "Parameters": 10**12}, max_jobs=5)
    assert caught.value.details == {"attribute": "Parameters", "jobs": 10**12, "max_jobs": 5}


def test_default_limit_is_one_hundred_thousand_jobs() -> None:
    with pytest.raises(InvalidDescription):
        expand({"Executable": "x", "Parameters": 100_001})


def test_job_id_replaces_percent_j_in_strings_and_list_items() -> None:
    description = {
        "Executable": "x",
        "StdOutput": "job_%j.out",
        "OutputSandbox": ["job_%j.out", "%j/%j.log", 3],
        "CPUTime": 60,
    }
    assert substitute_job_id(description, 1234) == {
        "Executable": "x",
        "StdOutput": "job_1234.out",
        "OutputSandbox": ["job_1234.out", "1234/1234.log", 3],
        "CPUTime": 60,
    }
    assert description["StdOutput"] == "job_%j.out"


def test_percent_j_survives_expansion_until_the_id_is_known() -> None:
    jobs = expand({"Executable": "x", "StdOutput": "%j_%n.out", "Parameters": 2})
    assert [substitute_job_id(job, 50 + i)["StdOutput"] for i, job in enumerate(jobs)] == [
        "50_0.out",
        "51_1.out",
    ]


scalars = st.one_of(st.text(), st.integers(), st.booleans())


@given(st.lists(scalars, min_size=1, max_size=30))
def test_every_listed_value_becomes_one_job_in_order(values: list[Any]) -> None:
    jobs = expand({"Executable": "x", "JobName": "n=%n", "Parameters": values})
    width = len(str(len(values) - 1))
    assert [job["Parameter"] for job in jobs] == values
    assert [job["ParameterNumber"] for job in jobs] == list(range(len(values)))
    assert [job["JobName"] for job in jobs] == [f"n={i:0{width}d}" for i in range(len(values))]
    assert all(
        set(job) == {"Executable", "JobName", "Parameter", "ParameterNumber"} for job in jobs
    )


@given(
    st.integers(min_value=1, max_value=40),
    st.integers(-1000, 1000),
    st.integers(-50, 50),
    st.integers(-2, 2),
)
def test_generated_values_follow_start_step_and_factor(
    count: int, start: int, step: int, factor: int
) -> None:
    jobs = expand(
        {
            "Executable": "x",
            "Parameters": count,
            "ParameterStart": start,
            "ParameterStep": step,
            "ParameterFactor": factor,
        }
    )
    values = [job["Parameter"] for job in jobs]
    assert values[0] == start
    assert all(values[i] == values[i - 1] * factor + step for i in range(1, count))


def test_lists_of_lists_give_each_job_a_list_as_dirac_does() -> None:
    jobs = expand(
        parse_jdl(
            """[
            Executable = "analyse";
            Parameters.InputData = {{"/vo/a.root", "/vo/b.root"},
                                    {"/vo/c.root", "/vo/d.root"}};
            InputData = %(InputData)s;
            InputSandbox = {"run.sh", %(InputData)s};
            Arguments = "--files %(InputData)s --n %n";
            ]"""
        )
    )
    assert [job["InputData"] for job in jobs] == [
        ["/vo/a.root", "/vo/b.root"],
        ["/vo/c.root", "/vo/d.root"],
    ]
    assert jobs[1]["InputSandbox"] == ["run.sh", "/vo/c.root", "/vo/d.root"]
    # Inside text a list reads as DIRAC substitutes it: braces, commas, no quotes or spaces.
    assert [job["Arguments"] for job in jobs] == [
        "--files {/vo/a.root,/vo/b.root} --n 0",
        "--files {/vo/c.root,/vo/d.root} --n 1",
    ]
    assert jobs[0]["Parameter.InputData"] == ["/vo/a.root", "/vo/b.root"]


def test_a_parameters_sub_classad_is_one_job_as_in_dirac() -> None:
    """2007-era JDL: ``Parameters = [ ... ]`` was a sub-ClassAd of settings, not a sequence."""
    description = parse_jdl('[ Executable = "x"; Parameters = [ Par1 = "a"; Par2 = 3; ]; ]')
    assert not is_parametric(description)
    assert expand(description) == [description]
    assert description["Parameters"] == '[ Par1 = "a"; Par2 = 3; ]'
