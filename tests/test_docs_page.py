"""GET /docs in a real headless browser (Debian's chromium and chromedriver, driven by Selenium):
the Swagger UI page renders the served document, its first tag is Auth, and the document link
under the title (/docs?format=json) is the JSON document, not the page again.

`make test` installs chromium when it is missing and apt-get can; without it this test skips,
saying so."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path(tempfile.gettempdir()) / "conduit-docs-page.png"


def test_docs_format_json_is_the_document(api):
    response = api.get("/docs", params={"format": "json"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    assert response.json() == api.get("/openapi.json").json()
    assert api.get("/docs").headers["content-type"].startswith("text/html")


def test_the_document_lists_auth_first(api):
    tags = [tag["name"] for tag in api.get("/openapi.json").json()["tags"]]
    assert tags[0] == "Auth"
    used = {tag for item in api.get("/openapi.json").json()["paths"].values() for op in item.values() for tag in op.get("tags", [])}
    assert set(tags) == used  # every tag listed once, none missing (an unlisted tag would go last)


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (make test installs them with apt-get where it can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="conduit-chromium-") as profile:
        for flag in (
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1600",
        ):
            options.add_argument(flag)
        # An explicit driver path: Selenium Manager (which would download a driver) never runs.
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


@pytest.mark.stack
def test_the_docs_page_in_a_browser(local_stack, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{local_stack.url}/docs")
    wait = WebDriverWait(browser, 30)
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".opblock-tag-section")))
    tags = [element.get_attribute("data-tag") for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-tag")]
    assert tags[0] == "Auth", tags
    assert "Vault" in tags and "Chat" in tags
    browser.save_screenshot(str(SCREENSHOT))

    # The link under the title names the document; following it gives the JSON document.
    link = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".info a.link, .info .url, .info__url a, .info a")))
    href = link.get_attribute("href") or ""
    assert href.endswith("/docs?format=json"), href
    browser.get(href)
    text = browser.find_element(By.TAG_NAME, "body").text
    document = json.loads(text)
    assert document["info"]["title"] == "Conduit API" and document["tags"][0]["name"] == "Auth"
