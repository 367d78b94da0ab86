// The Todo web app: a plain client of the public API (/auth/*, /api/users/*, /api/{id}/tasks).
"use strict";

// ---------------------------------------------------------------- session and tokens
//
// The access token lives in this variable only. The refresh token must outlive a reload,
// and the API hands it over in the JSON body (a cookie would not do: browsers refuse or
// partition cookies inside the Space's cross-site frame), so it is kept in localStorage.
// Any script of this origin could read it there: the Content-Security-Policy admits no
// script but this file. Storage may be refused (private modes, blocked third-party
// storage): the sign-in then lasts until the tab is reloaded.
const REFRESH_KEY = "todo.refresh_token";
const REFRESH_EARLY_MS = 60_000; // refresh up to a minute before the access token expires
const STORAGE_SETTLE_MS = 250;
const session = { access: null, expiresAt: 0, user: null, timer: 0, fallback: null };

function readRefreshToken() {
  try {
    return localStorage.getItem(REFRESH_KEY);
  } catch {
    return session.fallback;
  }
}

function writeRefreshToken(token) {
  session.fallback = token;
  try {
    if (token) localStorage.setItem(REFRESH_KEY, token);
    else localStorage.removeItem(REFRESH_KEY);
  } catch {
    // Kept in memory only (see above).
  }
}

function startSession(pair) {
  session.access = pair.access_token;
  session.expiresAt = Date.now() + pair.expires_in * 1000;
  session.user = pair.user;
  writeRefreshToken(pair.refresh_token);
  clearTimeout(session.timer);
  const lifetime = pair.expires_in * 1000;
  const delay = lifetime - Math.min(REFRESH_EARLY_MS, lifetime / 5);
  session.timer = setTimeout(() => act(refreshOrSignOut), delay);
}

function endSession() {
  clearTimeout(session.timer);
  Object.assign(session, { access: null, expiresAt: 0, user: null, timer: 0 });
  writeRefreshToken(null);
}

let refreshing = null;

/** A new token pair for this tab: true once signed in afresh, false when signed out. */
function refresh() {
  // One refresh at a time in this tab, and, where the browser has Web Locks, across its
  // tabs: each refresh then reads the token the previous one stored, so a token is seldom
  // presented twice. When it is (no locks, or a write that reached the other tab late),
  // the API's short reuse grace answers both.
  refreshing ??= oneTabAtATime(refreshNow).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** `task`'s result, run while holding a lock that every tab of this origin shares. */
function oneTabAtATime(task) {
  if (!navigator.locks) return task();
  return new Promise((resolve, reject) => {
    const locked = navigator.locks.request("todo-refresh", async () => {
      const outcome = task();
      outcome.then(resolve, reject);
      await outcome.catch(() => {});
      // Other tabs see a localStorage write a moment later: they wait that much longer.
      await new Promise((done) => setTimeout(done, STORAGE_SETTLE_MS));
    });
    // Refused where the browser keeps no storage for a cross-site frame: run unlocked.
    locked.catch((error) => {
      if (error.name === "SecurityError") task().then(resolve, reject);
      else reject(error);
    });
  });
}

async function refreshOrSignOut() {
  if (!(await refresh())) throw signedOutError();
}

async function refreshNow() {
  const token = readRefreshToken();
  if (!token) return false;
  const response = await send("/auth/refresh", { method: "POST", body: { refresh_token: token } });
  if (response.ok) {
    startSession(await response.json());
    return true;
  }
  if (response.status === 401) {
    endSession(); // expired, revoked or reused: this sign-in is over
    return false;
  }
  throw await apiError(response); // throttled or unavailable: keep the token, try later
}

// ---------------------------------------------------------------- talking to the API

class ApiError extends Error {}

async function send(path, { method = "GET", body, token } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The service could not be reached. Check the connection and try again.");
  }
}

/** A signed-in request: refreshes first when the token is about to expire, and once on 401. */
async function api(path, options = {}) {
  if (!session.access || Date.now() > session.expiresAt - 10_000) await refreshOrSignOut();
  let response = await send(path, { ...options, token: session.access });
  if (response.status === 401) {
    await refreshOrSignOut();
    response = await send(path, { ...options, token: session.access });
  }
  if (!response.ok) throw await apiError(response);
  return response;
}

function signedOutError() {
  showSignedOut();
  return new ApiError("Your session has ended. Sign in again.");
}

const SENTENCES = {
  email_taken: "An account with this email already exists. Sign in instead.",
  invalid_credentials: "Wrong email or password.",
  refresh_token_reused: "Your session has ended. Sign in again.",
  task_not_found: "That task no longer exists.",
};

/** The API's error as a sentence a person can act on, from its `code` and `detail`. */
async function apiError(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // Not JSON: described by its status below.
  }
  const { code, detail } = body ?? {};
  if (response.status === 429) {
    const seconds = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
    return new ApiError(`Too many attempts, try again in ${waitText(seconds)}.`);
  }
  if (Object.hasOwn(SENTENCES, code)) return new ApiError(SENTENCES[code]);
  if ([502, 503, 504].includes(response.status)) {
    return new ApiError("The service is unavailable right now. Try again in a moment.");
  }
  if (Array.isArray(detail)) return new ApiError(validationText(detail));
  if (typeof detail === "string" && detail) return new ApiError(sentence(detail));
  return new ApiError(`The request failed (HTTP ${response.status}).`);
}

function waitText(seconds) {
  if (!Number.isFinite(seconds) || seconds <= 0) return "a moment";
  if (seconds < 60) return seconds === 1 ? "1 second" : `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  return minutes === 1 ? "1 minute" : `${minutes} minutes`;
}

function validationText(errors) {
  // FastAPI's 422: [{loc: ["body", "password"], msg: "String should have ..."}, ...]
  return errors
    .map((error) => {
      const field = (error.loc ?? []).filter((part) => !["body", "query", "path"].includes(part));
      const name = field.length ? `${String(field[0]).replaceAll("_", " ")}: ` : "";
      return sentence(`${name}${error.msg ?? "invalid value"}`);
    })
    .map((text) => text[0].toUpperCase() + text.slice(1))
    .join(" ");
}

function sentence(text) {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

// ---------------------------------------------------------------- page state

const $ = (id) => document.getElementById(id);
const view = { offset: 0 };

function say(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function showError(error) {
  say(error instanceof ApiError ? error.message : "Something went wrong. Try again.", true);
  if (!(error instanceof ApiError)) console.error(error);
}

function showSignedOut({ forget = true } = {}) {
  if (forget) endSession();
  $("loading").hidden = true;
  $("tasks").hidden = true;
  $("account").hidden = true;
  $("auth").hidden = false;
}

async function showSignedIn() {
  $("loading").hidden = true;
  $("auth").hidden = true;
  $("tasks").hidden = false;
  $("account").hidden = false;
  $("account-email").textContent = session.user.email;
  view.offset = 0;
  await loadTasks();
}

function tasksPath(query = "") {
  return `/api/${encodeURIComponent(session.user.id)}/tasks${query}`;
}

function listQuery() {
  const form = new FormData($("filters"));
  const query = new URLSearchParams();
  for (const [name, value] of form) {
    const text = String(value).trim();
    if (name === "sort") {
      const [sort, order] = text.split(":");
      query.set("sort", sort);
      query.set("order", order);
    } else if (text && !(name === "status" && text === "all")) {
      query.set(name, text);
    }
  }
  query.set("offset", String(view.offset));
  return query;
}

let listRequests = 0;

async function loadTasks() {
  const request = ++listRequests;
  const query = listQuery();
  const response = await api(tasksPath(`?${query}`));
  const tasks = await response.json();
  if (request !== listRequests) return; // a newer list (other filters) is on its way
  const total = Number(response.headers.get("X-Total-Count") ?? tasks.length);
  const limit = Number(query.get("limit"));
  if (tasks.length === 0 && view.offset > 0 && total > 0) {
    view.offset = Math.max(0, Math.floor((total - 1) / limit) * limit); // the page emptied
    return loadTasks();
  }
  renderTasks(tasks);
  const first = total ? view.offset + 1 : 0;
  const last = view.offset + tasks.length;
  $("count").textContent =
    total === 1 ? "1 task" : `${total} tasks${total ? `, showing ${first} to ${last}` : ""}`;
  const pages = Math.max(1, Math.ceil(total / limit));
  $("page").textContent = `Page ${Math.floor(view.offset / limit) + 1} of ${pages}`;
  $("prev").disabled = view.offset === 0;
  $("next").disabled = last >= total;
}

function renderTasks(tasks) {
  const list = $("list");
  list.replaceChildren(...tasks.map(taskItem));
  if (!tasks.length) {
    const empty = document.createElement("li");
    empty.className = "empty muted";
    empty.textContent = "No tasks here.";
    list.append(empty);
  }
}

function taskItem(task) {
  const item = $("task-template").content.firstElementChild.cloneNode(true);
  item.dataset.id = task.id;
  item.classList.toggle("completed", task.completed);
  const checkbox = item.querySelector("input");
  checkbox.checked = task.completed;
  checkbox.addEventListener("change", () => act(() => toggleTask(task)));
  item.querySelector(".title").textContent = task.title;
  item.querySelector(".description").textContent = task.description ?? "";
  const meta = [`${capitalize(task.priority)} priority`];
  if (task.due_date) meta.push(`due ${task.due_date.slice(0, 10)}`);
  if (task.tags.length) meta.push(`tags: ${task.tags.join(", ")}`);
  item.querySelector(".meta").textContent = meta.join(" · ");
  // Spoken as "Edit <title>" and "Delete <title>": many tasks have these buttons.
  for (const hidden of item.querySelectorAll(".visually-hidden")) {
    hidden.textContent = ` ${task.title}`;
  }
  item.querySelector(".edit").addEventListener("click", () => startEdit(item, task));
  item.querySelector(".delete").addEventListener("click", () => act(() => deleteTask(task)));
  return item;
}

function capitalize(text) {
  return text[0].toUpperCase() + text.slice(1);
}

// ---------------------------------------------------------------- task form values

function taskFields(form) {
  const data = new FormData(form);
  const due = String(data.get("due_date"));
  return {
    title: String(data.get("title")).trim(),
    description: String(data.get("description")).trim() || null,
    priority: String(data.get("priority")),
    // A due date is a day: stored as its start in UTC, and shown as that day.
    due_date: due ? `${due}T00:00:00Z` : null,
    tags: [...new Set(String(data.get("tags")).split(",").map((tag) => tag.trim()))].filter(
      Boolean,
    ),
  };
}

function fillForm(form, task) {
  form.elements.title.value = task.title;
  form.elements.description.value = task.description ?? "";
  form.elements.priority.value = task.priority;
  form.elements.due_date.value = task.due_date ? task.due_date.slice(0, 10) : "";
  form.elements.tags.value = task.tags.join(", ");
}

// ---------------------------------------------------------------- actions

/** Runs one user action: its errors are shown, never thrown. */
async function act(action) {
  try {
    await action();
  } catch (error) {
    showError(error);
  }
}

async function authenticate(event) {
  event.preventDefault();
  const form = event.target;
  const mode = event.submitter?.value === "register" ? "register" : "login";
  const body = { email: form.elements.email.value, password: form.elements.password.value };
  if (mode === "register" && form.elements.name.value.trim()) {
    body.name = form.elements.name.value.trim();
  }
  say(mode === "register" ? "Signing up…" : "Signing in…");
  const response = await send(`/auth/${mode}`, { method: "POST", body });
  if (!response.ok) throw await apiError(response);
  startSession(await response.json());
  form.reset();
  await showSignedIn();
  say(`Signed in as ${session.user.email}.`);
  $("tasks-heading").focus();
}

async function signOut() {
  const token = readRefreshToken();
  showSignedOut();
  say("Signed out.");
  $("email").focus();
  if (token) {
    // Ends this sign-in on the server too; it is already over here whatever the answer.
    await send("/auth/logout", { method: "POST", body: { refresh_token: token } }).catch(() => {});
  }
}

async function addTask(event) {
  event.preventDefault();
  const form = event.target;
  const response = await api(tasksPath(), { method: "POST", body: taskFields(form) });
  const task = await response.json();
  form.reset();
  view.offset = 0;
  await loadTasks();
  say(`Added “${task.title}”.`);
  form.elements.title.focus();
}

async function toggleTask(task) {
  const response = await api(tasksPath(`/${task.id}/complete`), { method: "PATCH" });
  const updated = await response.json();
  await loadTasks();
  say(`“${updated.title}” marked ${updated.completed ? "done" : "not done"}.`);
  focusTask(task.id, "input");
}

function startEdit(item, task) {
  const form = $("edit-template").content.firstElementChild.cloneNode(true);
  form.setAttribute("aria-label", `Edit ${task.title}`);
  fillForm(form, task);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => saveTask(task, form));
  });
  const shown = Array.from(item.childNodes);
  const cancel = () => {
    item.replaceChildren(...shown);
    item.querySelector(".edit").focus();
  };
  form.querySelector(".cancel").addEventListener("click", cancel);
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") cancel();
  });
  item.replaceChildren(form);
  form.elements.title.focus();
}

async function saveTask(task, form) {
  // PATCH changes only the fields sent: all of the form's, with null clearing a field.
  const response = await api(tasksPath(`/${task.id}`), { method: "PATCH", body: taskFields(form) });
  const updated = await response.json();
  await loadTasks();
  say(`Saved “${updated.title}”.`);
  focusTask(task.id, ".edit");
}

async function deleteTask(task) {
  await api(tasksPath(`/${task.id}`), { method: "DELETE" });
  await loadTasks();
  say(`Deleted “${task.title}”.`);
  $("tasks-heading").focus();
}

async function clearCompleted() {
  const response = await api(tasksPath("?status=completed"), { method: "DELETE" });
  const { deleted } = await response.json();
  await loadTasks();
  say(deleted === 1 ? "Cleared 1 completed task." : `Cleared ${deleted} completed tasks.`);
}

function focusTask(id, selector) {
  const item = $("list").querySelector(`li[data-id="${id}"]`);
  (item?.querySelector(selector) ?? $("tasks-heading")).focus();
}

// ---------------------------------------------------------------- wiring

let filterTimer = 0;

function filtersChanged(delay) {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    view.offset = 0;
    act(loadTasks);
  }, delay);
}

function page(step) {
  const limit = Number($("f-limit").value);
  view.offset = Math.max(0, view.offset + step * limit);
  act(loadTasks);
}

function start() {
  $("auth-form").addEventListener("submit", (event) => act(() => authenticate(event)));
  $("sign-out").addEventListener("click", () => act(signOut));
  $("add-form").addEventListener("submit", (event) => act(() => addTask(event)));
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    filtersChanged(0);
  });
  $("filters").addEventListener("change", () => filtersChanged(0));
  $("filters").addEventListener("input", (event) => {
    if (event.target.tagName === "INPUT") filtersChanged(300); // typing: wait for a pause
  });
  $("prev").addEventListener("click", () => page(-1));
  $("next").addEventListener("click", () => page(1));
  $("clear").addEventListener("click", () => act(clearCompleted));
  // Signed out in another tab: this one is signed out too.
  window.addEventListener("storage", (event) => {
    if (event.key === REFRESH_KEY && !event.newValue && session.user) {
      showSignedOut();
      say("Signed out in another tab.");
    }
  });

  act(async () => {
    let signedIn;
    try {
      signedIn = await refresh();
    } catch (error) {
      // Throttled or unavailable: the stored sign-in stays for the next visit.
      showSignedOut({ forget: false });
      throw error;
    }
    if (signedIn) await showSignedIn();
    else showSignedOut();
  });
}

start();
