"""A person's session with the web app, in Chromium, against the stack under supervisord."""

from __future__ import annotations

import re
import time
import uuid

import httpx2
import pytest
from playwright.sync_api import Locator, Page, ViewportSize, expect

from tests.browser.conftest import LOGIN_FAILURE_LIMIT, PARTITIONED_STORAGE, Browser, Embedder
from tests.e2e.conftest import Stack

PASSWORD = "correct horse battery"
PHONE = ViewportSize(width=375, height=740)
DESKTOP = ViewportSize(width=1280, height=800)


def _email() -> str:
    return f"web-{uuid.uuid4().hex[:12]}@example.com"


def _status(page: Page) -> Locator:
    return page.get_by_role("status")


def _task(page: Page, title: str) -> Locator:
    return page.get_by_role("listitem").filter(has=page.get_by_role("checkbox", name=title))


def _titles(page: Page) -> list[str]:
    return page.locator("#list .title").all_text_contents()


def _sign_up(page: Page, email: str) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Name").fill("Ada")
    page.get_by_role("button", name="Sign up").click()
    expect(_status(page)).to_have_text(f"Signed in as {email}.")


def _add_task(
    page: Page, title: str, *, priority: str, tags: str, description: str = "", due: str = ""
) -> None:
    form = page.locator("#add-form")
    form.get_by_label("Title").fill(title)
    form.get_by_label("Description").fill(description)
    form.get_by_label("Priority").select_option(priority)
    form.get_by_label("Due date").fill(due)
    form.get_by_label("Tags").fill(tags)
    form.get_by_role("button", name="Add task").click()
    expect(_status(page)).to_have_text(f"Added “{title}”.")


def _filter(page: Page, label: str, value: str) -> None:
    field = page.get_by_role("search").get_by_label(label, exact=True)
    if field.evaluate("element => element.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def test_a_visitor_uses_the_app_end_to_end(browser: Browser) -> None:
    page = browser.new_page()
    email = _email()
    _sign_up(page, email)
    expect(page.get_by_text("No tasks here.")).to_be_visible()

    _add_task(page, "Buy milk", priority="high", tags="home, errands", due="2030-01-31")
    _add_task(page, "Write report", priority="medium", tags="work", description="Q3 numbers")
    _add_task(page, "Call the plumber", priority="low", tags="home")
    expect(page.locator("#count")).to_have_text("3 tasks, showing 1 to 3")
    # Newest first by default.
    assert _titles(page) == ["Call the plumber", "Write report", "Buy milk"]
    expect(_task(page, "Buy milk")).to_contain_text("High priority · due 2030-01-31")

    _filter(page, "Priority", "high")
    expect(page.locator("#count")).to_have_text("1 task")
    _filter(page, "Priority", "")
    _filter(page, "Tag", "home")
    expect(page.locator("#count")).to_have_text("2 tasks, showing 1 to 2")
    _filter(page, "Tag", "")
    _filter(page, "Search", "q3")
    expect(page.locator("#list .title")).to_have_text(["Write report"])
    _filter(page, "Search", "")
    expect(page.locator("#count")).to_have_text("3 tasks, showing 1 to 3")

    page.get_by_role("checkbox", name="Buy milk").check()
    expect(_status(page)).to_have_text("“Buy milk” marked done.")
    expect(page.get_by_role("checkbox", name="Buy milk")).to_be_checked()
    _filter(page, "Show", "completed")
    expect(page.locator("#list .title")).to_have_text(["Buy milk"])
    _filter(page, "Show", "pending")
    expect(page.locator("#list .title")).to_have_text(["Call the plumber", "Write report"])
    _filter(page, "Show", "all")
    expect(page.locator("#count")).to_have_text("3 tasks, showing 1 to 3")

    _task(page, "Write report").get_by_role("button", name="Edit").click()
    edit = page.get_by_role("form", name="Edit Write report")
    edit.get_by_label("Title").fill("Write the final report")
    edit.get_by_label("Priority").select_option("high")
    edit.get_by_label("Tags").fill("work, urgent")
    edit.get_by_role("button", name="Save").click()
    expect(_status(page)).to_have_text("Saved “Write the final report”.")
    edited = _task(page, "Write the final report")
    expect(edited).to_contain_text("Q3 numbers")  # what the form did not change is kept
    expect(edited).to_contain_text("High priority · tags: work, urgent")

    _filter(page, "Sort by", "title:asc")
    expect(page.locator("#list .title")).to_have_text(
        ["Buy milk", "Call the plumber", "Write the final report"]
    )
    _filter(page, "Sort by", "title:desc")
    expect(page.locator("#list .title")).to_have_text(
        ["Write the final report", "Call the plumber", "Buy milk"]
    )
    _filter(page, "Per page", "5")
    browser.screenshot(page, "tasks-1280")
    page.set_viewport_size(PHONE)
    browser.screenshot(page, "tasks-375")
    # Nothing wider than the phone's screen: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size(DESKTOP)

    _task(page, "Call the plumber").get_by_role("button", name="Delete").click()
    expect(_status(page)).to_have_text("Deleted “Call the plumber”.")
    expect(page.locator("#count")).to_have_text("2 tasks, showing 1 to 2")

    page.get_by_role("button", name="Clear completed").click()
    expect(_status(page)).to_have_text("Cleared 1 completed task.")
    expect(page.locator("#list .title")).to_have_text(["Write the final report"])

    page.reload()
    expect(page.locator("#account-email")).to_have_text(email)
    expect(page.locator("#list .title")).to_have_text(["Write the final report"])

    page.get_by_role("button", name="Sign out").click()
    expect(_status(page)).to_have_text("Signed out.")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("localStorage.length") == 0
    assert browser.problems == []


def test_paging_walks_through_the_list(browser: Browser) -> None:
    page = browser.new_page()
    _sign_up(page, _email())
    for number in range(1, 7):
        _add_task(page, f"Task {number}", priority="medium", tags="")
    _filter(page, "Sort by", "title:asc")
    _filter(page, "Per page", "5")
    expect(page.locator("#page")).to_have_text("Page 1 of 2")
    expect(page.locator("#count")).to_have_text("6 tasks, showing 1 to 5")
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#page")).to_have_text("Page 2 of 2")
    expect(page.locator("#list .title")).to_have_text(["Task 6"])
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    # Deleting the last task of the last page goes back a page.
    _task(page, "Task 6").get_by_role("button", name="Delete").click()
    expect(page.locator("#page")).to_have_text("Page 1 of 1")
    expect(page.locator("#count")).to_have_text("5 tasks, showing 1 to 5")
    assert browser.problems == []


def test_refused_sign_ins_are_explained(browser: Browser, stack: Stack) -> None:
    email = _email()
    with stack.client() as client:
        response = client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201
    page = browser.new_page()
    page.goto("/")

    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(_status(page)).to_have_text("Wrong email or password.")
    expect(_status(page)).to_have_class("error")

    page.get_by_role("button", name="Sign up").click()
    expect(_status(page)).to_contain_text("An account with this email already exists")

    page.get_by_label("Email").fill(_email())
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()
    expect(_status(page)).to_have_text("Password: String should have at least 8 characters.")

    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    for _ in range(LOGIN_FAILURE_LIMIT - 1):
        with page.expect_response("**/auth/login"):
            page.get_by_role("button", name="Sign in").click()
        expect(_status(page)).to_have_text("Wrong email or password.")
    with page.expect_response("**/auth/login"):
        page.get_by_role("button", name="Sign in").click()
    expect(_status(page)).to_have_text("Too many attempts, try again in 15 minutes.")
    assert not [p for p in browser.problems if "console" not in p]


def test_an_expired_token_is_refreshed_once_and_the_request_retried(browser: Browser) -> None:
    page = browser.new_page()
    _sign_up(page, _email())
    refreshes: list[str] = []
    page.on("request", lambda r: refreshes.append(r.url) if "/auth/refresh" in r.url else None)
    # The next list request is answered 401, as for an access token that just expired.
    page.route(
        re.compile(r"/api/[^/]+/tasks\?"),
        lambda route: route.fulfill(
            status=401,
            json={"detail": "Token has expired", "code": "token_expired"},
            headers={"WWW-Authenticate": "Bearer"},
        ),
        times=1,
    )
    _add_task(page, "After a refresh", priority="low", tags="")
    expect(page.locator("#list .title")).to_have_text(["After a refresh"])
    assert len(refreshes) == 1
    # Chromium logs the staged 401 itself; nothing else went wrong.
    assert [problem for problem in browser.problems if "(Unauthorized)" not in problem] == []


def test_the_access_token_is_refreshed_before_it_expires(browser: Browser) -> None:
    page = browser.new_page()
    page.clock.install()  # the page's timers and Date, moved on by the test
    _sign_up(page, _email())
    refreshes: list[str] = []
    page.on("request", lambda r: refreshes.append(r.url) if "/auth/refresh" in r.url else None)

    # A minute before the 15-minute access token expires.
    page.clock.run_for("13:00")
    assert refreshes == []
    with page.expect_response("**/auth/refresh") as refreshed:
        page.clock.run_for("01:01")
    assert refreshed.value.status == 200
    _add_task(page, "With the new token", priority="low", tags="")
    assert len(refreshes) == 1
    assert browser.problems == []


def test_two_tabs_reloading_together_both_stay_signed_in(browser: Browser, stack: Stack) -> None:
    first = browser.new_page()
    email = _email()
    _sign_up(first, email)
    second = browser.new_page()
    second.goto("/")
    expect(second.locator("#account-email")).to_have_text(email)

    # Both tabs start at once, each refreshing the one stored refresh token.
    for page in (first, second):
        page.evaluate("location.reload()")
    for page in (first, second):
        expect(page.locator("#account-email")).to_have_text(email)
        expect(page.get_by_text("No tasks here.")).to_be_visible()
    # The sign-in survived: a third start refreshes again.
    first.reload()
    expect(first.locator("#account-email")).to_have_text(email)

    token = first.evaluate("localStorage.getItem('todo.refresh_token')")
    with stack.client() as client:
        assert client.post("/auth/refresh", json={"refresh_token": token}).status_code == 200
    assert browser.problems == []


def test_the_page_is_the_app_for_browsers_and_json_for_clients(stack: Stack) -> None:
    with httpx2.Client(base_url=stack.base_url, timeout=10) as client:
        page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        api = client.get("/", headers={"Accept": "application/json"})
        script = client.get("/assets/app.js")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policies = page.headers.get_list("content-security-policy")
    assert "script-src 'self'" in policies[0]
    assert "'unsafe-inline'" not in " ".join(policies)
    assert f"frame-ancestors {stack.env['FRAME_ANCESTORS']}" in policies
    assert "x-frame-options" not in page.headers
    assert "Accept" in page.headers["vary"]
    assert "<script>" not in page.text
    assert api.json()["docs"] == "/docs"
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def _tab_to(page: Page, name: str) -> None:
    """Press Tab until the focused element's accessible text is `name` (or fail)."""
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement;"
            " return e.labels?.[0]?.textContent.trim() || e.textContent.trim(); }"
        )
        if focused == name or focused.startswith(f"{name} "):
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_everything_works_from_the_keyboard_alone(browser: Browser) -> None:
    page = browser.new_page()
    page.goto("/")
    expect(page.get_by_role("button", name="Sign up")).to_be_visible()
    email = _email()
    _tab_to(page, "Email")
    page.keyboard.type(email)
    _tab_to(page, "Password")
    page.keyboard.type(PASSWORD)
    _tab_to(page, "Sign up")
    page.keyboard.press("Enter")
    expect(_status(page)).to_have_text(f"Signed in as {email}.")

    _tab_to(page, "Title")
    page.keyboard.type("Typed task")
    page.keyboard.press("Enter")
    expect(_status(page)).to_have_text("Added “Typed task”.")

    _tab_to(page, "Typed task")  # the task's checkbox, named by its label
    page.keyboard.press("Space")
    expect(_status(page)).to_have_text("“Typed task” marked done.")
    expect(page.get_by_role("checkbox", name="Typed task")).to_be_focused()

    _tab_to(page, "Edit Typed task")
    page.keyboard.press("Enter")
    expect(page.get_by_role("form", name="Edit Typed task").get_by_label("Title")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Edit Typed task")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.type("Retyped task")
    page.keyboard.press("Enter")
    expect(_status(page)).to_have_text("Saved “Retyped task”.")

    _tab_to(page, "Delete Retyped task")
    page.keyboard.press("Enter")
    expect(_status(page)).to_have_text("Deleted “Retyped task”.")
    expect(page.get_by_text("No tasks here.")).to_be_visible()

    page.keyboard.press("Shift+Tab")  # from the list's heading back to the header
    expect(page.get_by_role("button", name="Sign out")).to_be_focused()
    page.keyboard.press("Enter")
    expect(_status(page)).to_have_text("Signed out.")
    assert browser.problems == []


def _sign_up_in_frame(page: Page, email: str) -> None:
    app = page.frame_locator("iframe")
    app.get_by_label("Email").fill(email)
    app.get_by_label("Password").fill(PASSWORD)
    app.get_by_role("button", name="Sign up").click()
    expect(app.get_by_role("status")).to_have_text(f"Signed in as {email}.")
    app.locator("#add-form").get_by_label("Title").fill("Framed task")
    app.get_by_role("button", name="Add task").click()
    expect(app.locator("#list .title")).to_have_text(["Framed task"])


@pytest.mark.parametrize("browser", [PARTITIONED_STORAGE], indirect=True)
def test_the_app_works_inside_another_sites_frame(browser: Browser, embedder: Embedder) -> None:
    page = browser.new_page()
    page.goto(embedder.allowed)
    email = _email()
    _sign_up_in_frame(page, email)

    # Still signed in when the embedding page is opened again: the frame's storage is kept
    # (for that embedding site only).
    page.reload()
    expect(page.frame_locator("iframe").locator("#account-email")).to_have_text(email)
    assert browser.problems == [f"request to another origin: {embedder.allowed}"] * 2


def test_a_frame_without_storage_signs_in_until_reloaded(
    browser: Browser, embedder: Embedder
) -> None:
    page = browser.new_page()
    page.goto(embedder.allowed)
    _sign_up_in_frame(page, _email())

    page.reload()
    app = page.frame_locator("iframe")
    expect(app.get_by_role("button", name="Sign in")).to_be_visible()
    expect(app.locator("#status")).to_be_empty()  # no error either
    assert browser.problems == [f"request to another origin: {embedder.allowed}"] * 2


def test_a_site_not_named_in_frame_ancestors_cannot_frame_the_app(
    browser: Browser, embedder: Embedder
) -> None:
    page = browser.new_page()
    page.goto(embedder.refused)
    expect(page.get_by_role("heading", name="Space")).to_be_visible()
    expect(page.frame_locator("iframe").get_by_role("button", name="Sign up")).to_have_count(0)
    assert any("frame-ancestors" in problem for problem in browser.problems), browser.problems


def _until_healthy(stack: Stack, within: float = 30) -> None:
    # Stack.wait_healthy runs an event loop, which Playwright's own loop in this thread forbids.
    deadline = time.monotonic() + within
    with stack.client() as client:
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "the stack did not recover"
            time.sleep(0.2)


def test_a_service_that_is_down_is_explained(browser: Browser, stack: Stack) -> None:
    page = browser.new_page()
    _sign_up(page, _email())
    stack.supervisorctl("stop", "tasks")
    try:
        form = page.locator("#add-form")
        form.get_by_label("Title").fill("While it is down")
        form.get_by_role("button", name="Add task").click()
        expect(_status(page)).to_have_text(
            "The service is unavailable right now. Try again in a moment."
        )
    finally:
        stack.start_program("tasks")
        _until_healthy(stack)
    form.get_by_role("button", name="Add task").click()
    expect(_status(page)).to_have_text("Added “While it is down”.")
    # Chromium logs the failed request itself; nothing else went wrong.
    assert [problem for problem in browser.problems if "(Bad Gateway)" not in problem] == []
