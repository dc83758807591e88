"""A real browser (Debian's chromium through Playwright) on the served pages, fed by a fake analyzer: the wall
shows a tile per camera, the video changes, the rep counter rises, a tile opens the camera with its rep list,
the history page lists the closed set and its reps, and a wrong token is refused."""

from __future__ import annotations

import time

from realtime.web import LiveHub

pytest_plugins = ["webfakes"]  # fixtures (not a conftest.py: that would shadow tests/conftest.py)

TOKEN = "browser-test-token-0123456789"
WALL_SCREENSHOT = "/tmp/web_wall.png"
HISTORY_SCREENSHOT = "/tmp/web_history.png"
CAMERA_SCREENSHOT = "/tmp/web_camera.png"


def _reps_shown(page, camera: str) -> int:
    return int(page.locator(f'[data-camera="{camera}"] [data-testid="reps"]').inner_text())


def test_wall_camera_history_and_login_in_chromium(chromium, store, live_server, fake_publisher):
    hub = LiveHub(["rack1", "platform"], max_fps=10.0, max_width=640)
    server = live_server(hub, store, token=TOKEN)
    publisher = fake_publisher(hub, store, cameras=("rack1", "platform"), fps=15.0, rep_every_s=0.8)
    context = chromium.new_context(viewport={"width": 1360, "height": 820})
    page = context.new_page()
    try:
        # A wrong token is refused, on the URL and on the login form.
        response = page.goto(server.url + "?token=wrong")
        assert response.status == 401 and page.locator("form#login").is_visible()
        page.fill("#token", "not-the-token")
        with page.expect_navigation() as nav:
            page.click("button[type=submit]")
        assert nav.value.status == 401 and "Wrong token" in page.content()
        # The right one through the login form leads to the wall.
        page.fill("#token", TOKEN)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert page.url.rstrip("/") == server.url.rstrip("/")

        tiles = page.locator('[data-testid="tile"]')
        tiles.first.wait_for()
        assert tiles.count() == 2
        assert [tiles.nth(i).get_attribute("data-camera") for i in range(2)] == ["rack1", "platform"]
        video = page.locator('[data-camera="rack1"] img[data-testid="video"]')
        page.wait_for_function("() => document.querySelectorAll('img[data-testid=video]').length === 2 && "
                               "[...document.querySelectorAll('img[data-testid=video]')].every(i => i.naturalWidth > 0)",
                               timeout=10_000)
        first_shot = video.screenshot()
        first_reps = _reps_shown(page, "rack1")
        time.sleep(1.5)
        second_shot = video.screenshot()
        assert first_shot != second_shot, "the live video did not change between two screenshots"
        page.wait_for_function(
            "n => Number(document.querySelector('[data-camera=rack1] [data-testid=reps]').textContent) >= n",
            arg=first_reps + 2, timeout=10_000)
        assert page.locator('[data-camera="rack1"] .badge').inner_text() == "live"
        assert "squat" in page.locator('[data-camera="rack1"] .exercise').inner_text().lower()
        assert "93%" in page.locator('[data-camera="rack1"] .conf').inner_text()
        assert "#" in page.locator('[data-camera="rack1"] .lastrep').inner_text()
        page.wait_for_function("() => document.getElementById('conn').className.includes('ok')")
        page.screenshot(path=WALL_SCREENSHOT)

        # Clicking a tile opens the camera large; its rep list fills in live.
        tiles.first.click()
        page.wait_for_url("**/cameras/rack1")
        rows = page.locator('[data-testid="replist"] tr')
        rows.first.wait_for()
        before = rows.count()
        page.wait_for_function("n => document.querySelectorAll('[data-testid=replist] tr').length > n",
                               arg=before, timeout=10_000)
        assert page.locator("#plot svg rect.bar").count() >= 1
        page.screenshot(path=CAMERA_SCREENSHOT)

        # Stop the analyzer: the open sets close; the history lists them with their counts.
        publisher.stop(close_sets=True)
        reps = publisher.reps["rack1"]
        page.goto(server.url + "history")
        page.locator('[data-testid="set-row"]').first.wait_for()
        row = page.locator('[data-testid="set-row"]', has_text="rack1")
        assert row.count() == 1
        assert row.locator(".set-reps").inner_text() == str(reps)
        assert "done" in row.inner_text()
        row.click()
        page.locator('[data-testid="set-reps"] tr').first.wait_for()
        assert page.locator('[data-testid="set-reps"] tr').count() == reps
        assert page.locator("#plot svg rect.bar").count() == reps
        assert page.locator("#plot svg rect.bar.faulty").count() == reps // 3
        page.screenshot(path=HISTORY_SCREENSHOT, full_page=True)
        csv_link = page.locator("#reps-csv").get_attribute("href")
        csv_text = page.request.get(server.url.rstrip("/") + csv_link).text()
        assert len(csv_text.strip().splitlines()) == reps + 1

        # Another browser without the token gets nothing from the API or the video.
        stranger = chromium.new_context().new_page()
        assert stranger.goto(server.url + "api/cameras").status == 401
        assert stranger.goto(server.url + "api/cameras/rack1/stream.mjpeg").status == 401
        stranger.context.close()
    finally:
        context.close()
        hub.close()

