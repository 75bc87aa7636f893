// The console's only script: confirmations on destructive forms and the live page's refresh.
// No tokens here: the session is an HttpOnly cookie and every form carries its CSRF field.
"use strict";

document.addEventListener("submit", (e) => {
  const question = e.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) e.preventDefault();
});

function cell(text) {
  const td = document.createElement("td");
  td.textContent = String(text);
  return td;
}

function spark(values) {
  const box = document.createElement("span");
  box.className = "spark";
  const max = Math.max(1, ...values);
  for (const v of values) {
    const bar = document.createElement("span");
    bar.style.height = `${Math.round((v / max) * 24)}px`;
    bar.title = String(v);
    box.appendChild(bar);
  }
  return box;
}

function render(data) {
  document.getElementById("events-per-s").textContent = String(data.events_per_s);
  const deliveries = document.querySelector("#deliveries tbody");
  deliveries.replaceChildren();
  for (const [channel, byStatus] of Object.entries(data.deliveries_per_s)) {
    for (const [status, rate] of Object.entries(byStatus)) {
      const tr = document.createElement("tr");
      tr.append(cell(channel), cell(status), cell(rate));
      deliveries.appendChild(tr);
    }
  }
  const lag = document.querySelector("#lag tbody");
  lag.replaceChildren();
  const groups = new Set(data.lag.flatMap((s) => Object.keys(s.lag)));
  for (const group of [...groups].sort()) {
    const series = data.lag.map((s) => s.lag[group] ?? 0);
    const tr = document.createElement("tr");
    const graph = document.createElement("td");
    graph.appendChild(spark(series));
    tr.append(cell(group), cell(series[series.length - 1] ?? 0), graph);
    lag.appendChild(tr);
  }
}

async function refresh(section) {
  try {
    const response = await fetch(section.dataset.src, { credentials: "same-origin" });
    if (response.ok) render(await response.json());
  } catch (err) {
    console.warn("live refresh failed", err);
  }
}

const live = document.getElementById("live");
if (live) {
  refresh(live);
  setInterval(() => refresh(live), 5000);
}
