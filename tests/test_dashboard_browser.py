"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by `make browser-deps`) driven by Selenium, against the real
`autopeft dashboard` command serving a SQLite database, with a real search beside it.

Screenshots go to artifacts/dashboard/ (gitignored) for people to look at.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("starlette")
pytest.importorskip("selenium")

from dashboard_helpers import SMALL_BIG, XSS_CANDIDATE, XSS_ERROR, XSS_STUDY, make_study  # noqa: E402

from autopeft.storage import open_storage  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("AUTOPEFT_ARTIFACTS",
                                Path(__file__).resolve().parents[1] / "artifacts")) / "dashboard"


def _missing_browser() -> str | None:
    for path in (CHROMIUM, DRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is missing: run `make browser-deps`"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`autopeft dashboard` on a database with two finished studies; yields (url, dir)."""
    reason = _missing_browser()
    if reason:
        if os.environ.get("AUTOPEFT_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("dash")
    storage = open_storage(f"sqlite:///{work / 'autopeft.db'}")
    make_study(storage, "s", SMALL_BIG)
    make_study(storage, XSS_STUDY, [{"metric": 0.8, "ratio": 0.01, "candidate": XSS_CANDIDATE},
                                    {"state": "failed", "error": XSS_ERROR}])
    storage.close()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "autopeft", "dashboard", "--port", str(port),
                             "--poll", "0.3"], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/api/studies", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the dashboard did not start: {proc.stdout.read().decode()}")
            time.sleep(0.2)
    yield url, work
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(site):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1800", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait(driver, predicate, timeout=30, what="the page"):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the live table is redrawn when new data arrives: an element may go stale mid-read
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: predicate(d), message=f"timed out waiting for {what}")


def _rows(driver) -> list:
    return driver.find_elements("css selector", "#trials tbody tr")


def _table(driver) -> list[dict]:
    """The trial table as it is now, read in one step (no stale elements)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#trials tbody tr')).map(function (tr) {"
        " return {number: tr.dataset.number, state: tr.dataset.state,"
        " cells: Array.from(tr.cells).map(function (td) { return td.textContent; })}; });")


def _shot(driver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _best(driver) -> str:
    return driver.find_element("id", "best").get_attribute("data-number")


def test_study_page_shows_rows_and_plots_and_sorts(site, browser):
    url, _ = site
    browser.get(url + "/")
    _wait(browser, lambda d: d.find_elements("css selector", "#studies tbody tr a"), what="studies")
    names = browser.execute_script("return Array.from(document.querySelectorAll("
                                   "'#studies tbody tr a')).map(function (a) { return a.textContent; });")
    assert "s" in names and XSS_STUDY in names
    _shot(browser, "01-studies")
    browser.get(url + "/studies/s")
    _wait(browser, lambda d: len(_rows(d)) == 5, what="five trial rows")
    plots = ["plot-best-trials", "plot-best-time", "plot-pareto", "plot-curves",
             "plot-importance"]
    _wait(browser, lambda d: all(d.find_elements("css selector", f"#{p} svg.main-svg")
                                 for p in plots), what="plotly to draw every plot")
    # plotly drew the data, not only the axes: a marker per scored trial in the Pareto plot
    points = browser.find_elements("css selector", "#plot-pareto .scatterlayer path.point")
    assert len(points) == 4 + 3  # four scored trials, three of them on the front
    table = _table(browser)
    assert table[0]["number"] == "2"  # rank 1 at the study's λ
    assert table[0]["cells"][-1] == "lora-r32" and table[0]["cells"][2] == "complete"
    assert table[-1]["cells"][-1] == "-"  # not a recipe
    _shot(browser, "02-study")
    header = browser.find_element("css selector", "#trials th[data-key=metric]")
    header.click()
    metrics = [r["cells"][5] for r in _table(browser)]
    assert metrics[:4] == ["0.7000", "0.8000", "0.8300", "0.9000"] and metrics[4] == "-"
    header.click()
    assert _table(browser)[0]["number"] == "2"
    browser.find_element("id", "state-filter").send_keys("failed")
    _wait(browser, lambda d: len(_table(d)) == 1, what="the state filter")
    assert _table(browser)[0]["state"] == "failed"


def test_reranking_controls_change_the_best_and_the_export_command(site, browser):
    url, _ = site
    browser.get(url + "/studies/s")
    _wait(browser, lambda d: _best(d) == "2", what="the best at the study's λ")
    assert browser.find_element("id", "export-command").text == "autopeft export s --out export-s"
    lam = browser.find_element("id", "ctl-lam")
    lam.clear()
    lam.send_keys("20")
    _wait(browser, lambda d: _best(d) == "0", what="the best at λ=20")
    _wait(browser, lambda d: _table(d)[0]["number"] == "0", what="the table to re-order")
    assert "--lambda 20" in browser.find_element("id", "export-command").text
    _shot(browser, "03-reranked-lambda-20")
    browser.find_element("id", "ctl-reset").click()
    _wait(browser, lambda d: _best(d) == "2", what="the best after reset")
    cap = browser.find_element("id", "ctl-max_params")
    cap.clear()
    cap.send_keys("0.0001")
    _wait(browser, lambda d: "no completed trial" in d.find_element("id", "best").text,
          what="no trial under a tiny params limit")


def test_a_trial_finished_by_a_running_search_appears_without_a_reload(site, browser):
    url, work = site
    (work / "fake.yaml").write_text("name: fake\nmodel: minilm\n")
    env = dict(os.environ, AUTOPEFT_FAKE=json.dumps({"sleep": 0.6}))
    search = subprocess.Popen([sys.executable, "-m", "autopeft.testing.fake_cli", "analytic",
                               "search", "--space",
                               "lora_only.yaml", "--experiment", "fake.yaml", "--trials", "40",
                               "--study", "live", "--quiet"], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:  # the page for a study that exists
            body = urllib.request.urlopen(url + "/api/studies", timeout=5).read()
            if b'"live"' in body:
                break
            assert search.poll() is None and time.monotonic() < deadline, search.stdout.read()
            time.sleep(0.2)
        browser.get(url + "/studies/live")
        _wait(browser, lambda d: d.find_elements("css selector", "#trials tbody tr"),
              what="the first rows")
        browser.execute_script("window.__sameDocument = 42;")
        done = len(browser.find_elements("css selector", "#trials tbody tr[data-state=complete]"))
        _wait(browser, lambda d: len(d.find_elements(
            "css selector", "#trials tbody tr[data-state=complete]")) >= done + 2,
            timeout=60, what="trials finished by the search")
        assert browser.execute_script("return window.__sameDocument") == 42  # no reload
        _wait(browser, lambda d: d.find_elements("css selector", "#plot-curves svg.main-svg"),
              what="the curves plot")
        _shot(browser, "04-live-search")
    finally:
        search.terminate()
        search.wait(timeout=30)


def test_escaping_holds_in_the_browser(site, browser):
    from selenium.common.exceptions import NoAlertPresentException

    url, _ = site
    browser.get(url + "/studies/" + quote(XSS_STUDY, safe=""))
    _wait(browser, lambda d: len(_rows(d)) == 2, what="the rows of the odd study")
    assert browser.find_element("id", "study-name").text == XSS_STUDY
    assert XSS_STUDY in browser.title
    candidate = _table(browser)[0]["cells"][3]
    assert '"<img src=x onerror=alert(2)>"' in candidate
    assert browser.find_elements("css selector", "main img") == []
    _shot(browser, "05-escaped-study")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - raises when no script ran
    browser.find_element("css selector", "#trials tbody tr[data-state=failed] a").click()
    _wait(browser, lambda d: d.find_elements("id", "error"), what="the trial page")
    assert browser.find_element("id", "error").text == XSS_ERROR
    assert browser.find_elements("css selector", "main img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018


def test_trial_page_and_404_page(site, browser):
    url, _ = site
    browser.get(url + "/studies/s/trials/3")
    _wait(browser, lambda d: d.find_elements("css selector", "#plot-curve svg.main-svg"),
          what="the trial's curve")
    assert "pruned" in browser.find_element("tag name", "h1").text
    assert browser.find_element("id", "cost").text.count("params_ratio") == 1
    _shot(browser, "06-trial")
    browser.get(url + "/studies/nope")
    assert browser.find_element("tag name", "h1").text == "Not found"
    assert "nope" in browser.find_element("id", "message").text
    browser.get(url + "/studies/s/trials/12")
    assert browser.find_element("tag name", "h1").text == "Not found"
    _shot(browser, "07-not-found")
