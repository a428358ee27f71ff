"""End to end in a real browser: Debian's chromium driven by Playwright against ``ketasim serve``.

The service runs as a subprocess on a free loopback port with a temporary data folder. The page is
loaded, the dose changed (the plasma curve and MADRS must follow), a small trial run to its report,
the patients table downloaded and the sources listed; screenshots go to ``test-artifacts/``.
Skipped with the reason when chromium (``make test`` installs it with apt-get) or Playwright is absent,
except under CI (``CI=true``), where their absence fails the run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import skip_or_fail_in_ci

CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-token-0123456789abcdef"  # the service runs as a shared one would: token on, security headers
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

if not Path(CHROMIUM).exists():
    skip_or_fail_in_ci(f"{CHROMIUM} is absent (install Debian's chromium: `apt-get install chromium`; make test does)")
try:
    from playwright import sync_api
except ImportError:
    skip_or_fail_in_ci("Playwright for Python is not installed (it is in the test extra)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``ketasim serve`` in a subprocess; its URL once the kernel is loaded."""
    port = free_port()
    data = tmp_path_factory.mktemp("browser-data")
    log = open(data / "server.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "ketasim", "serve", "--port", str(port), "--data", str(data),
                                "--max-patients", "100"], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "KETASIM_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a cold kernel cache compiles for tens of seconds
        while True:
            if process.poll() is not None:
                raise AssertionError(f"ketasim serve exited: {(data / 'server.log').read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).json()["kernel"] == "ready":
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("ketasim serve did not become ready in 180 s")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # a script, style or connection the Content-Security-Policy blocks is reported on the console
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.goto(f"{server}/#token={TOKEN}")  # how a user opens a service started with --token
    yield page
    context.close()
    assert not errors, f"JavaScript errors or blocked content on the page: {errors}"


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web_{name}.png"), full_page=True)


def plasma_peak(page) -> float:
    return page.evaluate("""() => {
        const trace = document.getElementById('chart-sim').data.find(t => t.meta && t.meta.output === 'pk.ketamine_plasma');
        return Math.max(...trace.y.filter(v => v !== null));
    }""")


def summary_value(page, key: str) -> float:
    return float(page.get_attribute(f"#sum-{key}", "data-value"))


def assert_disclaimer_visible(page) -> None:
    disclaimer = page.locator("#disclaimer")
    assert disclaimer.is_visible() and "research and teaching" in disclaimer.inner_text().lower()


def test_changing_the_dose_moves_plasma_and_madrs(page):
    page.wait_for_selector("#sim-status[data-state=done]", timeout=60_000)
    assert_disclaimer_visible(page)
    peak, cmax, madrs = plasma_peak(page), summary_value(page, "cmax"), summary_value(page, "madrs-24h")
    assert 150 < cmax < 215 and peak == pytest.approx(cmax, rel=0.02)
    assert "ng/mL" in page.inner_text("#sum-cmax")
    screenshot(page, "simulation_0.5mgkg")

    page.fill("#amount", "1.0")
    page.wait_for_function(f"() => Number(document.getElementById('sum-cmax').dataset.value) > {cmax * 1.5}", timeout=30_000)
    page.wait_for_selector("#sim-status[data-state=done]")
    assert plasma_peak(page) == pytest.approx(2 * peak, rel=0.1)  # linear kinetics: twice the dose, twice the peak
    assert summary_value(page, "madrs-24h") < madrs  # a larger dose: more NMDA block, lower MADRS a day later
    axis_titles = page.evaluate("() => Object.entries(document.getElementById('chart-sim').layout)"
                                ".filter(([k]) => k.startsWith('yaxis')).map(([, a]) => a.title.text)")
    assert all("[" in t and "]" in t for t in axis_titles) and "concentration [ng/mL]" in axis_titles
    screenshot(page, "simulation_1.0mgkg")

    page.fill("#amount", "-1")  # refused by the service, which names the field
    page.wait_for_selector("#sim-status[data-state=error]", timeout=30_000)
    assert "dose.0.amount" in page.inner_text("#sim-status")


def test_mechanism_choice_changes_the_model_and_a_wrong_one_is_named(page):
    """Unticking every route but the resting-GluN2B one removes the glutamate surge's drive; ticking
    only a modulator is refused by the service, which names the field."""
    page.wait_for_selector("#sim-status[data-state=done]", timeout=60_000)
    boxes = {b: page.locator(f"input[name=mechanism][value={b}]") for b in
             ("disinhibition", "glun2b_eef2", "hnk_ampa", "inflammation", "opioid")}
    assert boxes["disinhibition"].is_checked() and not boxes["opioid"].is_checked()
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if "/api/simulate" in r.url else None)
    for name in ("disinhibition", "hnk_ampa", "inflammation"):
        boxes[name].uncheck()
    page.wait_for_selector("#sim-status[data-state=done]", timeout=30_000)
    page.wait_for_timeout(800)  # the form reruns debounced; let the last request go out and finish
    page.wait_for_selector("#sim-status[data-state=done]", timeout=30_000)
    assert sent and sent[-1]["model"] == {"mechanisms": ["glun2b_eef2"]}
    boxes["glun2b_eef2"].uncheck()
    boxes["opioid"].check()
    page.wait_for_selector("#sim-status[data-state=error]", timeout=30_000)
    assert "mechanisms" in page.inner_text("#sim-status")


def test_small_trial_runs_to_its_report(page):
    page.click("nav button[data-tab=trial]")
    assert_disclaimer_visible(page)
    page.wait_for_function("() => document.getElementById('trial-toml').value.includes('[trial]')")
    page.select_option("#trial-example", "parallel-ketamine-vs-midazolam")
    toml = page.input_value("#trial-toml").replace("n = 40", "n = 6")
    page.fill("#trial-toml", toml)
    page.click("#trial-run")
    page.wait_for_selector("#trial-report[data-state=done]", timeout=120_000)
    assert "12 / 12 patients" in page.inner_text("#trial-status")
    for chart in ("chart-trajectories", "chart-rates", "chart-relapse"):
        assert page.evaluate(f"() => document.getElementById('{chart}').data.length") > 0
    assert "ketamine vs midazolam" in page.inner_text("#trial-report")
    # ketamine use over the course (trial/ketamine_use.py): one infusion of about 35 mg, neither flag
    assert "Ketamine use over the course" in page.inner_text("#trial-report")
    rows = page.locator("#ketamine-use tbody tr")
    cells = {rows.nth(i).locator("td").first.inner_text(): rows.nth(i).locator("td").all_inner_texts()
             for i in range(rows.count())}
    assert cells["ketamine"][-1].startswith("0 % (") and cells["ketamine"][-2].startswith("0 % (")
    assert float(cells["ketamine"][1].split()[0]) > 20.0 and cells["midazolam"][1].startswith("0 ")
    assert_disclaimer_visible(page)
    screenshot(page, "trial_report")

    with page.expect_download() as download:
        page.click("#download-csv")
    saved = ARTIFACTS / "web_trial_patients.csv"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0].startswith("# ketasim is a research and teaching tool")  # the disclaimer travels with the file
    assert lines[1].startswith("arm,") and len(lines) == 2 + 12 * 5  # 12 patients x 5 assessments


def test_sources_view_lists_every_parameter_with_unit_and_citation(page):
    page.click("nav button[data-tab=sources]")
    page.wait_for_selector("#sources-table tbody tr")
    assert_disclaimer_visible(page)
    rows = page.locator("#sources-table tbody tr").count()
    assert rows > 50
    page.fill("#sources-filter", "cl_s_ketamine")
    assert page.locator("#sources-table tbody tr").count() < rows
    first = page.locator("#sources-table tbody tr").first.inner_text()
    assert "L/h" in first
    screenshot(page, "sources")
    page.click("nav button[data-tab=runs]")
    page.wait_for_selector("#runs-table tbody tr")
    assert_disclaimer_visible(page)
    screenshot(page, "runs")
