"use strict";
// The dashboard: one aggregate (jobs by status), one page of jobs with their customer
// (`expand`) and the listing's total (`count`), paged by the cursor Portico returns. Every
// call carries the token, so the browser asks Portico first (a CORS preflight): the page works
// only from an origin Portico's `[server.cors]` allows.

const PAGE_SIZE = 20;
const view = { api: "", token: "", cursor: null, next: null, page: 1, status: "" };
const byId = (id) => document.getElementById(id);

async function call(path) {
  let response;
  try {
    response = await fetch(view.api + path, {
      headers: { Authorization: `Bearer ${view.token}`, Accept: "application/json" },
    });
  } catch (_) {
    // The browser hides why (CORS refused, nothing listening) from the page on purpose.
    throw new Error(`cannot reach ${view.api} from this page: is its origin ` +
      `(${location.origin}) allowed in [server.cors]?`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = (body && (body.detail || body.title)) || response.statusText;
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function showError(error) {
  const box = byId("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function drawChart(groups) {
  const svg = byId("chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const max = Math.max(1, ...groups.map((g) => g.count));
  const width = 100, gap = 24, height = 160;
  groups.forEach((group, i) => {
    const bar = document.createElementNS(ns, "g");
    bar.setAttribute("class", "bar");
    bar.dataset.status = group.status ?? "";
    bar.dataset.count = String(group.count);
    const h = Math.round((group.count / max) * height);
    const x = i * (width + gap) + 10;
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", x);
    rect.setAttribute("y", 180 - h);
    rect.setAttribute("width", width);
    rect.setAttribute("height", h);
    const count = document.createElementNS(ns, "text");
    count.setAttribute("x", x + width / 2);
    count.setAttribute("y", 175 - h);
    count.setAttribute("text-anchor", "middle");
    count.textContent = String(group.count);
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x + width / 2);
    label.setAttribute("y", 198);
    label.setAttribute("text-anchor", "middle");
    label.textContent = group.status ?? "(none)";
    bar.append(rect, count, label);
    svg.append(bar);
  });
  svg.dataset.ready = "true";
}

async function loadChart() {
  const answer = await call("/v1/jobs/aggregate?group_by=status&count=true");
  drawChart(answer.data.map((g) => ({ status: g.group.status, count: g.count })));
}

function cell(text, field) {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.textContent = text ?? "";
  return td;
}

async function loadPage() {
  const query = new URLSearchParams({ expand: "customer", count: "exact", limit: PAGE_SIZE });
  if (view.status) query.set("status", view.status);
  if (view.cursor) query.set("cursor", view.cursor);
  const answer = await call(`/v1/jobs?${query}`);
  const rows = answer.data.map((job) => {
    const tr = document.createElement("tr");
    tr.dataset.id = job.id;
    // A customer the token may not see is null: shown as a dash, never an error.
    tr.append(
      cell(job.id, "id"),
      cell(job.customer ? job.customer.name : "—", "customer_name"),
      cell(job.status, "status"),
      cell(job.due_on, "due_on"),
    );
    return tr;
  });
  const body = byId("rows");
  body.replaceChildren(...rows);
  const total = byId("total");
  total.textContent = `(${answer.total} in all)`;
  total.dataset.total = String(answer.total);
  view.next = answer.next_cursor || null;
  byId("next").disabled = !view.next;
  byId("first").disabled = view.page === 1;
  byId("page").textContent = `page ${view.page}`;
  body.dataset.page = String(view.page);
  body.dataset.ready = "true";
}

async function run(step) {
  byId("rows").dataset.ready = "false";
  try {
    showError(null);
    await step();
  } catch (error) {
    showError(error);
  }
}

byId("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  view.api = byId("api").value.replace(/\/+$/, "");
  view.token = byId("token").value.trim();
  view.cursor = null;
  view.page = 1;
  run(async () => {
    await Promise.all([loadChart(), loadPage()]);
    byId("board").hidden = false;
  });
});
byId("next").addEventListener("click", () => {
  if (!view.next) return;
  view.cursor = view.next;
  view.page += 1;
  run(loadPage);
});
byId("first").addEventListener("click", () => {
  view.cursor = null;
  view.page = 1;
  run(loadPage);
});
byId("status").addEventListener("change", (event) => {
  view.status = event.target.value;
  view.cursor = null;
  view.page = 1;
  run(loadPage);
});
