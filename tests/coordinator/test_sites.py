"""With a site list, a job naming an unknown site is refused at submission, not left waiting."""

from __future__ import annotations

from typing import Any, Callable

import requests


def _submit(coordinator: Any, description: str) -> requests.Response:
    token = coordinator.token(role="user", subject="alice", vo="vo1")
    return requests.post(
        coordinator.api("/jobs"),
        json={"description": description, "format": "jdl"},
        headers=coordinator.headers(token),
        timeout=30,
    )


def test_unknown_site_names_are_refused_when_the_coordinator_has_a_site_list(
    start_coordinator: Callable[..., Any],
) -> None:
    coordinator = start_coordinator(sites="LCG.CERN.ch,LCG.DESY.de")
    ok = _submit(coordinator, 'Executable = "/bin/true"; Site = "LCG.CERN.ch";')
    assert ok.status_code == 201
    typo = _submit(coordinator, 'Executable = "/bin/true"; Site = {"LCG.CERN.ch", "LCG.CERM.ch"};')
    assert typo.status_code == 400
    body = typo.json()
    assert body["code"] == "invalid_description"
    assert body["details"]["attribute"] == "Site"
    assert body["details"]["unknown"] == ["LCG.CERM.ch"]
    banned = _submit(coordinator, 'Executable = "/bin/true"; BannedSites = {"LCG.Nowhere.xx"};')
    assert banned.status_code == 400
    assert banned.json()["details"]["attribute"] == "BannedSites"
    assert _submit(coordinator, 'Executable = "/bin/true";').status_code == 201


def test_without_a_site_list_any_site_is_accepted(coordinator: Any) -> None:
    assert (
        _submit(coordinator, 'Executable = "/bin/true"; Site = "Any.Where.xx";').status_code == 201
    )
