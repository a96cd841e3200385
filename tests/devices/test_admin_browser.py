"""The device admin page, seen through a real browser (Debian's Chromium via Playwright)."""
import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from devices import services
from devices.models import Level
from tests.support.services import require

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Playwright cannot download its own browsers here; drive the distribution's build, quietly.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PASSWORD = "browser-test-password"
SCREENSHOT = Path(__file__).resolve().parents[1] / "artifacts" / "admin-device-page.png"


@pytest.fixture
def browser_env(transactional_db, monkeypatch):
    require(os.path.exists(CHROMIUM), f"Debian chromium at {CHROMIUM}")
    # Playwright's sync API runs an event loop in this thread, which trips Django's async-safety check on ORM calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def with_password(user):
    user.set_password(PASSWORD)
    user.save()
    return user


@contextmanager
def admin_page(live_server, user):
    """A Chromium page already signed in to the admin as `user`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)  # a missing element fails in seconds, not half a minute
            page.goto(f"{live_server.url}/admin/login/")
            page.fill("#id_username", user.email)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_load_state()
            yield page
        finally:
            browser.close()


def change_url(live_server, device):
    return f"{live_server.url}/admin/devices/device/{device.pk}/change/"


def test_device_page_shows_effective_access_and_shares(browser_env, live_server, world):
    services.create_share(actor=world.owner, device=world.lamp, grantee=world.alice, level=Level.CONTROL)
    services.create_share(actor=world.owner, group=world.group, grantee=world.bob, level=Level.VIEW)
    admin = with_password(world.admin)

    with admin_page(live_server, admin) as page:
        assert page.get_by_role("link", name="Devices", exact=True).count() >= 1, page.content()

        response = page.goto(change_url(live_server, world.lamp))
        assert response.status == 200
        assert world.lamp.thing_name in page.inner_text("#content")

        rows = page.locator("table.effective-access tr")
        by_email = {cells[0]: cells[1] for cells in (rows.nth(i).locator("td").all_inner_texts()
                                                       for i in range(rows.count())) if cells}
        assert by_email[world.alice.email] == "control"
        assert by_email[world.bob.email] == "view"

        # Only the direct share is an inline row; bob's comes through the group.
        inline = page.inner_text("#shares-group")
        assert world.alice.email in inline
        assert world.bob.email not in inline

        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    assert SCREENSHOT.stat().st_size > 10_000


def test_admin_of_another_tenant_gets_404(browser_env, live_server, world, other):
    stranger = with_password(other.admin)

    with admin_page(live_server, stranger) as page:
        assert page.get_by_role("link", name="Devices", exact=True).count() >= 1, page.content()
        response = page.goto(change_url(live_server, world.lamp))
        assert response.status == 404
        assert world.lamp.thing_name not in page.content()


def test_share_hours_are_typed_one_window_a_line(browser_env, live_server, world):
    """docs/console.md#weekly-schedules: a zone from the list, lines of days and hours."""
    admin = with_password(world.admin)

    with admin_page(live_server, admin) as page:
        page.goto(f"{live_server.url}/admin/devices/share/add/")
        page.select_option("#id_device", str(world.lock.pk))
        page.select_option("#id_grantee", str(world.bob.pk))
        page.select_option("#id_level", str(int(Level.CONTROL)))
        page.select_option("#id_schedule_zone", "Europe/Brussels")
        page.fill("#id_schedule", "tue 09:00-12:00\nweekends 10:00-11:00")
        page.click("input[name=_save]")
        page.wait_for_load_state()
        assert "Line 2 (weekends 10:00-11:00)" in page.inner_text(".field-schedule")
        assert page.input_value("#id_schedule") == "tue 09:00-12:00\nweekends 10:00-11:00"  # kept to fix
        page.screenshot(path=str(SCREENSHOT.with_name("admin-share-hours-refused.png")), full_page=True)

        page.fill("#id_schedule", "tue 09:00-12:00\nsat-sun 10:00-11:00")
        page.click("input[name=_save]")
        page.wait_for_load_state()
        assert page.url.endswith("/admin/devices/share/"), page.url
        row = page.locator("#result_list tr", has_text=world.bob.email).inner_text()
        assert "tue 09:00-12:00\nsat,sun 10:00-11:00\nEurope/Brussels" in row
        page.screenshot(path=str(SCREENSHOT.with_name("admin-share-hours.png")), full_page=True)
