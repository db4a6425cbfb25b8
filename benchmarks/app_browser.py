"""Driving the page of `ua-sam app` in a real headless browser (Debian's `chromium` and
`chromium-driver`, through Selenium), as a user would: upload an image, click or drag on it,
wait for the result, read what the page shows and which requests it made.

Used by tests/webapp/test_browser.py and benchmarks/bench_app.py (timings, screenshot).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver", "chromium-driver")
WAIT_SECONDS = 900  # a first click of SAM ViT-B at 1024 px on a busy 2-core CPU takes minutes
# Timestamps taken inside the page, so that a timing leaves out Selenium's own round trips: the
# last mouse press (capture phase) and the last change of the message once no request is pending.
_CLOCKS = """
if (!window.uaSamClocks) {
  window.uaSamClocks = {press: 0, shown: 0};
  document.addEventListener("mousedown", () => { window.uaSamClocks.press = performance.now(); }, true);
  new MutationObserver(() => {
    const box = document.getElementById("ua-message");
    if (box && !/^(processing|\\d+(\\.\\d+)?s\\b|queue:)/i.test(box.innerText)) window.uaSamClocks.shown = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""
_PENDING = re.compile(r"^(processing|\d+(\.\d+)?s\b|queue:)", re.I)


def find_browser() -> tuple[str, str] | None:
    """(browser, driver) executables on PATH, or None."""
    browser = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    driver = next((shutil.which(name) for name in DRIVER_NAMES if shutil.which(name)), None)
    return (browser, driver) if browser and driver else None


class PageDriver:
    """One headless Chromium window on the app's page.

    Args:
        url: the app's local URL.
        size: window (width, height) in CSS pixels.
    """

    def __init__(self, url: str, size: tuple[int, int] = (1400, 1700)) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        found = find_browser()
        if found is None:
            raise RuntimeError("no chromium and chromedriver on PATH: apt-get install chromium chromium-driver")
        options = webdriver.ChromeOptions()
        options.binary_location = found[0]
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--no-first-run", "--disable-extensions", f"--window-size={size[0]},{size[1]}"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(found[1]), options=options)
        self.driver.set_page_load_timeout(WAIT_SECONDS)
        self.url = url
        self._requests: list[str] = []
        self.reload()

    def reload(self) -> None:
        """Open the page afresh (an empty upload field, no prompt)."""
        self.requested_urls()
        self.driver.get(self.url)

    def close(self) -> None:
        self.driver.quit()

    def _wait(self, condition: Any, what: str) -> Any:
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, WAIT_SECONDS, poll_frequency=0.05).until(condition)
        except TimeoutException:
            raise TimeoutError(f"the page did not show {what} within {WAIT_SECONDS} s; it says: "
                               f"{self.message()!r}") from None

    def _find(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def _all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def message(self) -> str:
        """The page's message, once no request is pending ('' while Gradio shows its timer)."""
        found = self._all("#ua-message")
        if not found:
            return ""
        text = found[0].text
        return "" if _PENDING.match(text) or "pending" in (found[0].get_attribute("class") or "") else text

    def prompt(self) -> dict[str, Any]:
        return json.loads(self._find("#ua-prompt textarea").get_attribute("value") or "{}")

    def upload(self, image: str | Path, expect: str = "Click on the object") -> str:
        """Upload ``image`` and wait until the page says ``expect``; returns the message."""
        self._wait(lambda _: self._all("#ua-upload input[type=file]"), "the upload field")
        self._find("#ua-upload input[type=file]").send_keys(str(Path(image).resolve()))
        self._wait(lambda _: expect in self.message(), repr(expect))
        if "Cannot do that" not in expect:
            self._wait(lambda _: self.canvas_size()[0] > 0, "the image")
        return self.message()

    def canvas_size(self) -> tuple[int, int]:
        """(width, height) of the clickable picture, in its own pixels (0, 0 when absent)."""
        images = self._all("#ua-canvas img")
        if not images:
            return 0, 0
        return (int(images[0].get_attribute("naturalWidth") or 0), int(images[0].get_attribute("naturalHeight") or 0))

    def _offset(self, x: float, y: float) -> tuple[int, int]:
        """Picture pixel (x, y) -> offset from the centre of the displayed <img>, CSS pixels."""
        image = self._find("#ua-canvas img")
        rect = self.driver.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", image)
        natural = self.canvas_size()
        scale = min(rect[0] / natural[0], rect[1] / natural[1], 1)
        return round((x - natural[0] / 2) * scale), round((y - natural[1] / 2) * scale)

    def _after(self, action: Any, before: str) -> tuple[str, float]:
        """Do ``action`` (a press and release on the picture), wait for a new result; returns the
        message and the seconds from the press to the message's last change, as the page saw them."""
        self.driver.execute_script(_CLOCKS)
        action()
        self._wait(lambda _: self.message() not in ("", before) and "samples for" in self.message(), "a result")
        clocks = self.driver.execute_script("return window.uaSamClocks;")
        return self.message(), (clocks["shown"] - clocks["press"]) / 1000

    def click(self, x: float, y: float) -> tuple[str, float]:
        """Click picture pixel (x, y); wait for the result. Returns (message, seconds)."""
        from selenium.webdriver.common.action_chains import ActionChains

        dx, dy = self._offset(x, y)
        image = self._find("#ua-canvas img")
        chain = ActionChains(self.driver).move_to_element_with_offset(image, dx, dy).click()
        return self._after(chain.perform, self.message())

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> tuple[str, float]:
        """Press at picture pixel ``start``, move, release at ``end``; wait for the result."""
        from selenium.webdriver.common.action_chains import ActionChains

        (x0, y0), (x1, y1) = self._offset(*start), self._offset(*end)
        image = self._find("#ua-canvas img")
        chain = ActionChains(self.driver).move_to_element_with_offset(image, x0, y0).click_and_hold()
        chain = chain.move_by_offset((x1 - x0) // 2, (y1 - y0) // 2).move_by_offset(x1 - x0 - (x1 - x0) // 2,
                                                                                    y1 - y0 - (y1 - y0) // 2)
        return self._after(lambda: chain.release().perform(), self.message())

    def thumbnails(self) -> int:
        return len(self._all("#ua-gallery img"))

    def has_heat_map(self) -> bool:
        return bool(self._all("#ua-heat img"))

    def summary_text(self) -> str:
        return self._find("#ua-summary").text

    def requested_urls(self) -> list[str]:
        """Every URL the page has asked for so far (Chromium's network log)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self._requests.append(message["params"]["request"]["url"])
        return list(self._requests)

    def screenshot(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path
