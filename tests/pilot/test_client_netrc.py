"""The client's bearer token and a netrc entry for the coordinator's host, against a real
coordinator (the pilot process and the ``gridpilot`` CLI with one:
tests/integration/test_pilot_network.py).

requests gives a request made without an ``auth`` the credentials ``~/.netrc`` (``NETRC``)
holds for its host, over an Authorization header set by hand, and again on every redirect,
even over the session's own auth.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pilot.client import CoordinatorClient, RetryPolicy
from pilot.errors import CoordinatorRejected
from protocol import WhoAmI
from tests.conftest import RunningCoordinator

NETRC_ENTRY = "machine 127.0.0.1 login site-data password not-a-gridpilot-token\n"
ONE_TRY = RetryPolicy(max_retry_s=0.0)


@pytest.fixture
def netrc_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "netrc"
    path.write_text(NETRC_ENTRY)
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


@pytest.mark.parametrize("path", ["/tokens/whoami", "/tokens/whoami/"])
def test_the_token_is_sent_not_the_netrc_credentials(
    shared_coordinator: RunningCoordinator, netrc_file: Path, vo: str, path: str
) -> None:
    """``/tokens/whoami/`` is answered with a 307 to ``/tokens/whoami``: the redirected
    request carries the token too."""
    token = shared_coordinator.token(subject="alice", vo=vo)
    client = CoordinatorClient(shared_coordinator.url, token, retry=ONE_TRY)
    try:
        whoami = WhoAmI.from_dict(client.request("GET", path).json())
    finally:
        client.close()
    assert (whoami.subject, whoami.vo) == ("alice", vo)


def test_without_a_token_the_netrc_credentials_are_sent_as_requests_does(
    shared_coordinator: RunningCoordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/pilot.md: the client honours netrc where it has no token of its own to send.
    The coordinator says which: no Authorization header at all, or one that is not Bearer
    (netrc's Basic credentials)."""
    said: dict[str, str] = {}
    for case, netrc in (("no netrc", tmp_path / "absent"), ("netrc", tmp_path / "netrc")):
        if case == "netrc":
            netrc.write_text(NETRC_ENTRY)
            netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        client = CoordinatorClient(shared_coordinator.url, "", retry=ONE_TRY)
        with pytest.raises(CoordinatorRejected) as refused:
            client.request("GET", "/tokens/whoami")
        client.close()
        assert refused.value.status == 401
        said[case] = refused.value.message
    assert "missing Authorization header" in said["no netrc"]
    assert "must be 'Bearer <token>'" in said["netrc"]
