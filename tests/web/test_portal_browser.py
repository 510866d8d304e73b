"""The portal in a real browser (Debian's chromium, headless, through selenium) against a real
coordinator and a real pilot running jobs: log in, filter, open a job, watch a status change
and a log line arrive live, kill a job and see it turn Killed without a reload, download
output, submit from the Launchpad, see the accounting plots drawn. Each page's screenshot
is saved (docs/web.md shows them)."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.coordinator.pilot_calls import FakePilot
from tests.web.browser import wait_until
from tests.web.conftest import PILOT_SITE, Portal, login, shot, wait_downloaded

pytestmark = pytest.mark.slow


def text_of(driver: Any, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


def test_login_shows_vo_and_role_and_keeps_the_token_in_an_httponly_cookie(
    browser: Any, portal: Portal
) -> None:
    browser.delete_all_cookies()
    browser.get(portal.url + "/web/jobs?status=Done")
    assert "/web/login?next=" in browser.current_url
    shot(browser, portal, "login")
    browser.find_element("id", "token").send_keys("not-a-token")
    browser.find_element("id", "login-submit").click()
    # The form posts and the answer is a new page: wait for it (the click may return first).
    errors = wait_until(lambda: browser.find_elements("id", "login-error"), what="login error")
    assert "cannot log in" in errors[0].text
    browser.find_element("id", "token").send_keys(portal.tokens["alice"])
    browser.find_element("id", "login-submit").click()
    wait_until(lambda: "/web/jobs?status=Done" in browser.current_url, what="the page asked for")
    assert text_of(browser, "who-subject") == "alice"
    assert text_of(browser, "who-vo") == "VO vo1"
    assert text_of(browser, "who-role") == "user"
    (cookie,) = [c for c in browser.get_cookies() if c["name"] == "gridpilot_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie").find("gridpilot_session") == -1


def test_log_out_then_in_with_a_token_file(browser: Any, portal: Portal, tmp_path: Path) -> None:
    login(browser, portal, "alice")
    browser.find_element("id", "logout").click()
    wait_until(lambda: "/web/login" in browser.current_url, what="the login page")
    browser.get(portal.url + "/web/jobs")
    assert "/web/login" in browser.current_url  # the session is gone
    token_file = tmp_path / "alice.token"
    token_file.write_text(portal.tokens["alice"] + "\n")
    browser.find_element("id", "token-file").send_keys(str(token_file))
    browser.find_element("id", "login-submit").click()
    wait_until(lambda: text_of(browser, "who-subject") == "alice", what="alice signed in")


def test_monitor_filters_sorts_and_filters_by_chart(browser: Any, portal: Portal) -> None:
    portal.wait_status(portal.jobs["hello"], {"Done"})
    portal.wait_status(portal.jobs["fails"], {"Failed"})
    login(browser, portal, "alice")
    browser.get(portal.url + "/web/jobs")
    wait_until(lambda: "on" in text_of(browser, "live-state"), what="the live stream")
    shot(browser, portal, "monitor")
    browser.find_element("css selector", 'input[name="status"][value="Failed"]').click()
    browser.find_element("id", "apply-filters").click()
    wait_until(lambda: "status=Failed" in browser.current_url, what="the filter in the URL")
    statuses = [e.text for e in browser.find_elements("css selector", "#jobs td.c-Status")]
    assert statuses == ["Failed"]
    # The URL is the bookmark: opening it again shows the same filter.
    browser.get(browser.current_url)
    assert [e.text for e in browser.find_elements("css selector", "#jobs td.c-Status")] == [
        "Failed"
    ]
    # A click on the "Done" bar of the status chart filters on Done.
    browser.get(portal.url + "/web/jobs")
    click_bar(browser, "status-chart", "Done")
    wait_until(lambda: "status=Done" in browser.current_url, what="the chart's filter")
    statuses = [e.text for e in browser.find_elements("css selector", "#jobs td.c-Status")]
    assert statuses and set(statuses) == {"Done"}
    # Sort by job name, ascending, then hide the Site column.
    browser.find_element("link text", "Job name").click()
    wait_until(lambda: "sort=JobName" in browser.current_url, what="the sort in the URL")
    browser.find_element("css selector", "details.columns summary").click()
    browser.find_element("css selector", '.column-toggle[value="Site"]').click()
    assert not browser.find_element("css selector", "#jobs td.c-Site").is_displayed()
    browser.find_element("css selector", '.column-toggle[value="Site"]').click()


def click_bar(driver: Any, canvas_id: str, label: str) -> None:
    """Click the middle of one bar of a Chart.js bar chart, as a user would."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = wait_until(lambda: driver.find_element("id", canvas_id), what=canvas_id)
    x, y = wait_until(
        lambda: driver.execute_script(
            """const chart = Chart.getChart(arguments[0]);
               const i = chart.data.labels.indexOf(arguments[1]);
               if (i < 0) return null;
               const bar = chart.getDatasetMeta(0).data[i];
               return [bar.x, (bar.y + bar.base) / 2];""",
            canvas,
            label,
        ),
        what=f"the {label} bar",
    )
    width, height = canvas.size["width"], canvas.size["height"]
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(x - width / 2), int(y - height / 2)
    ).click().perform()


def test_job_page_shows_a_status_change_within_2s_and_a_log_line_within_1s(
    browser: Any, portal: Portal
) -> None:
    """A job held by a pilot speaking the API by hand, so the test knows when each change
    reaches the coordinator: from there to the browser is what is measured."""
    (job_id,) = portal.submit("alice", '[Executable = "/bin/true"; Site = "FAKE.Site.org";]')
    fake = FakePilot(portal.coord, "vo1", site="FAKE.Site.org")
    login(browser, portal, "alice")
    browser.get(f"{portal.url}/web/jobs/{job_id}")
    wait_until(lambda: "on" in text_of(browser, "live-state"), what="the live stream")
    assert fake.match() == [job_id]
    wait_until(lambda: text_of(browser, "job-status") == "Matched", 2.0, "Matched shown")
    reported = time.monotonic()
    assert fake.report(job_id, "Running").status_code == 200
    wait_until(lambda: text_of(browser, "job-status") == "Running", 2.0, "Running within 2 s")
    status_s = time.monotonic() - reported
    appended = time.monotonic()
    assert fake.append_log(job_id, b"hello from the node\n", offset=0).status_code == 200
    wait_until(
        lambda: "hello from the node" in text_of(browser, "log-stdout"), 1.0, "the line in 1 s"
    )
    log_s = time.monotonic() - appended
    history = [e.text for e in browser.find_elements("css selector", "#history td:first-child")]
    assert history[-2:] == ["Matched", "Running"]
    assert fake.report(job_id, "Done", exit_code=0).status_code == 200
    wait_until(lambda: text_of(browser, "job-status") == "Done", 2.0, "Done within 2 s")
    print(f"status change shown after {status_s:.3f} s, log line after {log_s:.3f} s")


def test_a_waiting_job_says_why_it_waits(browser: Any, portal: Portal) -> None:
    """No pilot here has 64 cores: the panel names that requirement as the reason."""
    (job_id,) = portal.submit("alice", '[Executable = "/bin/true"; NumberOfProcessors = 64;]')
    portal.jobs["too-wide"] = job_id  # killed when the module ends
    login(browser, portal, "alice")
    browser.get(f"{portal.url}/web/jobs/{job_id}")
    wait_until(lambda: browser.find_element("id", "why-it-waits").is_displayed(), 10.0, "the panel")
    summary = text_of(browser, "why-summary")
    assert summary.startswith("none of the ") and summary.endswith("meets: cores (64)")
    row = browser.find_element("css selector", '#why-requirements tr[data-requirement="cores"]')
    assert "excludes-all" in (row.get_attribute("class") or "")
    assert row.text.startswith("cores 64 0 of ") and row.text.endswith("excludes every pilot")
    vo_row = browser.find_element("css selector", '#why-requirements tr[data-requirement="vo"]')
    assert "excludes every pilot" not in vo_row.text
    assert "Task queue" in text_of(browser, "why-it-waits-body")
    shot(browser, portal, "why-it-waits")
    portal.api("alice", "POST", f"/jobs/{job_id}/kill")
    wait_until(
        lambda: not browser.find_element("id", "why-it-waits").is_displayed(),
        5.0,
        "the panel hidden once the job is no longer waiting",
    )


def test_live_log_of_a_real_pilot_then_kill_from_the_monitor(browser: Any, portal: Portal) -> None:
    ticker = portal.jobs["ticker"]
    portal.wait_status(ticker, {"Running"})
    login(browser, portal, "alice")
    browser.get(f"{portal.url}/web/jobs/{ticker}")

    def ticks() -> int:
        return text_of(browser, "log-stdout").count("tick ")

    first = wait_until(ticks, 10.0, "the ticker's first lines")
    wait_until(lambda: ticks() > first + 3, 10.0, "more lines without a reload")
    assert PILOT_SITE in text_of(browser, "pilot")
    browser.execute_script("document.getElementById('parameters-title').scrollIntoView()")
    shot(browser, portal, "job")
    browser.get(f"{portal.url}/web/jobs?ids={ticker}")
    wait_until(lambda: "on" in text_of(browser, "live-state"), what="the live stream")
    browser.execute_script("window.notReloaded = true")
    browser.find_element("css selector", f'.select-job[value="{ticker}"]').click()
    browser.find_element("id", "action-kill").click()
    result = wait_until(lambda: text_of(browser, "action-results"), what="the kill's result")
    assert f"Job {ticker}: kill asked" in result
    cell = f'tr[data-job-id="{ticker}"] td.c-Status'
    wait_until(
        lambda: browser.find_element("css selector", cell).text == "Killed",
        20.0,
        "the row to turn Killed",
    )
    assert browser.execute_script("return window.notReloaded") is True


def test_output_sandbox_files_and_archive_download(browser: Any, portal: Portal) -> None:
    hello = portal.jobs["hello"]
    portal.wait_status(hello, {"Done"})
    login(browser, portal, "alice")
    browser.get(f"{portal.url}/web/jobs/{hello}")
    names = [e.text for e in browser.find_elements("css selector", "#output-files a")]
    assert sorted(names) == ["StdErr", "StdOut"]
    browser.find_element("link text", "StdOut").click()
    downloaded = wait_downloaded(portal.downloads, "StdOut")
    expected = portal.api("alice", "GET", f"/jobs/{hello}/output/files/StdOut")
    assert downloaded.read_bytes() == expected.content and b"StdOut" in expected.content
    browser.find_element("id", "output-archive").click()
    archive = wait_downloaded(portal.downloads, f"job_{hello}_output.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        assert {"StdOut", "StdErr"} <= {m.name.removeprefix("./") for m in tar.getmembers()}


def test_launchpad_errors_then_submit_with_an_input_sandbox(
    browser: Any, portal: Portal, tmp_path: Path
) -> None:
    login(browser, portal, "alice")
    browser.get(portal.url + "/web/launchpad")
    shot(browser, portal, "launchpad")
    editor = browser.find_element("id", "description")
    set_editor(browser, '[\n    Executable = "/bin/cat";\n    Arguments = ;\n]')
    browser.find_element("id", "submit").click()
    error = wait_until(lambda: text_of(browser, "description-error"), what="the inline error")
    assert "line 3, column" in error
    assert [e.text.strip() for e in browser.find_elements("css selector", ".error-line")] == ["3"]
    assert editor.get_attribute("aria-invalid") == "true"
    shot(browser, portal, "launchpad-error")

    data = tmp_path / "numbers.txt"
    data.write_text("42 from the launchpad\n")
    set_editor(
        browser,
        '[\n    JobName = "from-launchpad";\n    Executable = "/bin/cat";\n'
        '    Arguments = "numbers.txt";\n    InputSandbox = {"numbers.txt"};\n'
        '    StdOutput = "StdOut";\n    OutputSandbox = {"StdOut"};\n]',
    )
    browser.find_element("id", "files").send_keys(str(data))
    browser.find_element("id", "submit").click()
    links = wait_until(
        lambda: browser.find_elements("css selector", "#submitted-ids a"), what="the new id"
    )
    (job_id,) = [int(link.text.split()[-1]) for link in links]
    assert not browser.find_element("id", "description-error").is_displayed()
    browser.find_element("id", "submitted-monitor").click()
    wait_until(lambda: f"ids={job_id}" in browser.current_url, what="the monitor")
    assert [e.text for e in browser.find_elements("css selector", "#jobs td.c-JobID")] == [
        str(job_id)
    ]
    portal.wait_status(job_id, {"Done"})
    log = portal.api("alice", "GET", f"/jobs/{job_id}/logs/stdout")
    assert log.text == "42 from the launchpad\n"

    browser.get(portal.url + "/web/launchpad")
    browser.find_element("id", "preset-parametric").click()
    browser.find_element("id", "p-parameters").send_keys("3")
    browser.find_element("id", "submit").click()
    links = wait_until(
        lambda: browser.find_elements("css selector", "#submitted-ids a"), what="the new ids"
    )
    assert len(links) == 3  # the field (3) replaced the preset's Parameters = 5


def set_editor(driver: Any, text: str) -> None:
    editor = driver.find_element("id", "description")
    driver.execute_script(
        "arguments[0].value = arguments[1];arguments[0].dispatchEvent(new Event('input'));",
        editor,
        text,
    )


def test_pilots_page_shows_the_running_pilot(browser: Any, portal: Portal) -> None:
    login(browser, portal, "alice")
    browser.get(portal.url + "/web/pilots")
    rows = browser.find_elements("css selector", "#pilots tbody tr")
    (real,) = [row for row in rows if PILOT_SITE in row.text]  # and the test's hand-made one
    row = real.text
    assert "ce.portal.org" in row and "takes work" in row
    checks = real.find_elements("css selector", "ul.checks li")
    assert checks and all(c.get_attribute("title") is not None for c in checks)
    assert str(portal.jobs["hello"]) in row
    shot(browser, portal, "pilots")


def test_accounting_plots_are_drawn_and_failures_drill_down(browser: Any, portal: Portal) -> None:
    portal.wait_status(portal.jobs["fails"], {"Failed"})
    login(browser, portal, "alice")
    browser.get(portal.url + "/web/accounting")
    wait_until(
        lambda: browser.find_element("tag name", "body").get_attribute("data-plots-drawn") == "4",
        what="the four plots",
    )
    for canvas in ("chart-final", "chart-running", "chart-eff-site", "chart-eff-owner"):
        painted = browser.execute_script(
            """const c = document.getElementById(arguments[0]);
               const chart = Chart.getChart(c);
               const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               let inked = 0;
               for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) inked++;
               return [chart.data.datasets.length, inked];""",
            canvas,
        )
        assert painted[0] >= 1 and painted[1] > 1000, (canvas, painted)
    final = browser.execute_script(
        "return Chart.getChart(document.getElementById('chart-final')).data.datasets"
        ".map(d => [d.label, d.data.reduce((a, b) => a + b, 0)])"
    )
    assert dict(final)["Failed"] >= 1 and dict(final)["Done"] >= 1
    shot(browser, portal, "accounting")
    json_link = browser.find_element("css selector", "#plot-final a.json").get_attribute("href")
    assert json_link.endswith("/api/v1/accounting/final-statuses?days=1")
    row = browser.find_element("xpath", f"//table[@id='failures']//tr[td[2]='{PILOT_SITE}']")
    row.find_element("tag name", "a").click()
    wait_until(lambda: "status=Failed" in browser.current_url, what="the drill-down")
    ids = [e.text for e in browser.find_elements("css selector", "#jobs td.c-JobID")]
    assert str(portal.jobs["fails"]) in ids


def test_another_vo_sees_nothing_of_it_in_the_browser(browser: Any, portal: Portal) -> None:
    login(browser, portal, "bob")
    assert text_of(browser, "who-vo") == "VO vo2"
    browser.get(f"{portal.url}/web/jobs/{portal.jobs['hello']}")
    assert "Not found" in browser.find_element("tag name", "h1").text
    browser.get(f"{portal.url}/web/jobs")
    assert browser.find_elements("css selector", "#jobs tbody tr[data-job-id]") == []
    browser.get(f"{portal.url}/web/pilots")
    assert browser.find_elements("css selector", "#pilots tbody tr[id]") == []
    # The download links of alice's job answer bob as if it did not exist.
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    reply = requests.get(
        f"{portal.url}/api/v1/jobs/{portal.jobs['hello']}/output", cookies=cookies, timeout=10
    )
    assert reply.status_code == 404
