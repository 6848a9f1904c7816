// The operator console: reads the admin API with the token the operator gives, kept in this
// tab's session storage only (never in a URL, never in local storage). Every value is written
// with textContent: nothing an endpoint, a receiver or a database said becomes markup.

const TOKEN = "portico.console.token";
const EVERY_MS = 3000;

const $ = (id) => document.getElementById(id);
let timer = null;
let busy = false;

function token() {
  return sessionStorage.getItem(TOKEN);
}

async function api(method, path) {
  const answer = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
  });
  let body = null;
  try {
    body = await answer.json();
  } catch {
    body = null;
  }
  return { status: answer.status, ok: answer.ok, body };
}

// A refusal or failure as the server described it (problem+json).
function problem(answer) {
  const body = answer.body || {};
  const title = body.title || "Request failed";
  const detail = body.detail ? `: ${body.detail}` : "";
  let hint = "";
  if (answer.status === 401) hint = " Sign in with a valid, unexpired token.";
  if (answer.status === 403 && !body.detail) hint = " This token does not hold the admin scope.";
  return `Refused (${answer.status} ${title})${detail}.${hint}`;
}

function showError(text, status) {
  const error = $("error");
  error.textContent = text;
  error.dataset.status = String(status || "");
  error.hidden = false;
}

function cell(row, field, value, text, className) {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.dataset.value = value === null || value === undefined ? "" : String(value);
  td.textContent = text === undefined ? td.dataset.value || "—" : text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function badge(row, field, value, good, bad) {
  const td = cell(row, field, value, "");
  const span = document.createElement("span");
  span.textContent = value;
  span.className = `badge ${good.includes(value) ? "good" : bad.includes(value) ? "bad" : "warn"}`;
  td.appendChild(span);
  return td;
}

function number(row, field, value, text) {
  return cell(row, field, value, text, "number");
}

const ms = (value) => (value === null || value === undefined ? "—" : `${value.toFixed(2)} ms`);
const when = (value) => (value ? new Date(value).toLocaleString() : "—");

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function rows(tableId, items, fill) {
  const body = $(tableId).querySelector("tbody");
  const fresh = items.map((item) => {
    const row = document.createElement("tr");
    fill(row, item);
    return row;
  });
  body.replaceChildren(...fresh);
}

function render(overview, deadLetters) {
  rows("sources", overview.sources, (row, s) => {
    row.dataset.name = s.name;
    cell(row, "name", s.name);
    cell(row, "dialect", s.dialect);
    badge(row, "health", s.health, ["ok"], ["unavailable"]);
    badge(row, "breaker", s.breaker, ["closed"], ["open"]);
    const pool = number(row, "connections_in_use", s.connections_in_use,
      `${s.connections_in_use} / ${s.connections_max}`);
    pool.dataset.max = String(s.connections_max);
    number(row, "waiting", s.waiting);
    number(row, "shed", s.shed);
    number(row, "statements", s.statements);
    number(row, "latency_mean_ms", s.latency_mean_ms, ms(s.latency_mean_ms));
    number(row, "latency_p95_ms", s.latency_p95_ms, ms(s.latency_p95_ms));
  });

  const cache = overview.cache;
  for (const dd of $("cache").querySelectorAll("dd")) {
    const field = dd.dataset.field;
    const value = cache[field];
    dd.dataset.value = value === null ? "" : String(value);
    dd.textContent =
      field === "hit_rate" ? (value === null ? "—" : `${(value * 100).toFixed(1)} %`)
      : field === "bytes" ? bytes(value)
      : String(value);
  }

  rows("versions", overview.versions, (row, v) => {
    row.dataset.name = v.name;
    cell(row, "name", v.name);
    badge(row, "status", v.status, ["current"], []);
    cell(row, "deprecated", v.deprecated);
    cell(row, "sunset", v.sunset);
  });

  rows("feeds", overview.feeds, (row, f) => {
    row.dataset.name = f.name;
    cell(row, "name", f.name);
    cell(row, "resources", f.resources.join(", "));
    cell(row, "strategy", f.strategy);
    number(row, "lag_seconds", f.lag_seconds, f.lag_seconds === null ? "—" : `${f.lag_seconds} s`);
    cell(row, "last_poll_at", f.last_poll_at, when(f.last_poll_at));
    number(row, "poll_errors", f.poll_errors);
    const last = f.last_error;
    cell(row, "last_error", last ? `${last.kind} ${last.at}` : "",
      last ? `${last.kind}, ${when(last.at)}` : "—");
  });

  rows("subscriptions", overview.subscriptions, (row, s) => {
    row.dataset.name = s.name;
    cell(row, "name", s.name);
    cell(row, "version", s.version);
    badge(row, "enabled", s.enabled ? "yes" : "no", ["yes"], ["no"]).dataset.value = String(s.enabled);
    number(row, "delivered", s.delivered);
    number(row, "pending", s.pending);
    number(row, "retrying", s.retrying);
    number(row, "dead_letters", s.dead_letters);
  });

  const letters = deadLetters || [];
  rows("dead-letters", letters, (row, d) => {
    row.dataset.id = String(d.id);
    cell(row, "id", d.id);
    cell(row, "subscription", d.subscription);
    cell(row, "event_id", d.event_id);
    number(row, "attempts", d.attempts);
    cell(row, "last_error", d.last_error);
    cell(row, "created_at", d.created_at, when(d.created_at));
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "resend";
    button.dataset.id = String(d.id);
    button.textContent = "Resend";
    button.addEventListener("click", () => resend(d.id, button));
    td.appendChild(button);
    row.appendChild(td);
  });
  $("no-dead-letters").hidden = letters.length > 0;

  const board = $("board");
  board.hidden = false;
  board.dataset.generated = overview.generated_at;
  board.dataset.renders = String(Number(board.dataset.renders || 0) + 1);
  board.dataset.ready = "true";
  $("generated").textContent = `Last refreshed ${when(overview.generated_at)}.`;
}

async function refresh() {
  if (busy || !token()) return;
  busy = true;
  try {
    const overview = await api("GET", "/admin/overview");
    if (!overview.ok) {
      refused(overview);
      return;
    }
    const dead = await api("GET", "/admin/dead-letters?limit=50");
    // Without feeds there are no webhooks, and no dead letters to list (404).
    const letters = dead.ok ? dead.body.data : [];
    $("error").hidden = true;
    $("status").textContent = "Signed in";
    render(overview.body, letters);
  } catch (error) {
    showError(`Portico did not answer: ${error.message}`, 0);
  } finally {
    busy = false;
  }
}

function refused(answer) {
  showError(problem(answer), answer.status);
  if (answer.status === 401 || answer.status === 403) {
    // The token will not do: forget it and ask again.
    signOut(false);
  }
}

async function resend(id, button) {
  const outcome = $("outcome");
  button.disabled = true;
  const answer = await api("POST", `/admin/deliveries/${encodeURIComponent(id)}/resend`);
  outcome.dataset.id = String(id);
  outcome.dataset.status = String(answer.status);
  outcome.className = answer.ok ? "" : "failed";
  outcome.textContent = answer.ok
    ? `Delivery ${id} is due again: it is sent at once, with a fresh retry schedule.`
    : `Delivery ${id} was not resent. ${problem(answer)}`;
  outcome.hidden = false;
  await refresh();
}

function start() {
  $("sign-in").hidden = true;
  $("sign-out").hidden = false;
  $("status").textContent = "Signing in…";
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, EVERY_MS);
}

function signOut(clearError) {
  sessionStorage.removeItem(TOKEN);
  clearInterval(timer);
  timer = null;
  $("board").hidden = true;
  $("board").dataset.ready = "false";
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  $("status").textContent = "Signed out";
  if (clearError) $("error").hidden = true;
}

$("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const given = $("token").value.trim().replace(/^Bearer\s+/i, "");
  $("token").value = "";
  if (!given) {
    showError("Enter an admin token.", 0);
    return;
  }
  sessionStorage.setItem(TOKEN, given);
  $("error").hidden = true;
  start();
});
$("sign-out").addEventListener("click", () => signOut(true));

if (token()) start();
