// ketasim page: plain JavaScript, no build step. Talks to the JSON API of `ketasim serve`.
// For research and teaching only: every view shows the disclaimer (in the sticky header).
"use strict";

// ------------------------------------------------------------------ helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (typeof x !== "number") return String(x);
  return Math.abs(x) >= 1e4 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : String(Number(x.toPrecision(digits)));
}

// A 422 answer names the field: show "dose[0].amount: message" lines.
function describeError(status, body) {
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${d.msg}`).join("\n");
  }
  return `HTTP ${status}`;
}

// A service started with --token: the page is opened as /#token=..., which stays in this tab only
// (sessionStorage) and is removed from the address bar; every API call sends it.
const TOKEN = (() => {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("ketasim-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("ketasim-token");
})();

// Links a browser follows (downloads, reports) cannot send a header: they carry the token instead.
function withToken(url) {
  return TOKEN ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : url;
}

async function api(path, options = {}) {
  if (TOKEN) options = { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${TOKEN}` } };
  const response = await fetch(path, options);
  if (response.status === 401) throw new Error("this service needs a token: open the page as /#token=YOUR_TOKEN");
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(describeError(response.status, body));
  return body;
}

function setStatus(node, state, text) {
  node.dataset.state = state;
  node.textContent = text;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

const PLOT_CONFIG = { responsive: true, displaylogo: false };
const COLORS = ["#2760a8", "#d1495b", "#2e9e6a", "#e68a00", "#7a4fb5", "#00798c", "#8c564b"];

// ------------------------------------------------------------------ tabs
const tabLoaders = {};

function showTab(name) {
  for (const button of document.querySelectorAll("nav button")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === name));
  }
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== `tab-${name}`;
  if (tabLoaders[name]) tabLoaders[name]();
  // charts drawn while hidden have no width: let Plotly measure again
  for (const chart of document.querySelectorAll(`#tab-${name} .js-plotly-plot`)) Plotly.Plots.resize(chart);
}

// ------------------------------------------------------------------ simulation: the form
let OPTIONS = null;

function fillSelect(select, values, selected) {
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
  if (selected !== undefined) select.value = selected;
}

function setUpForm(options) {
  const form = document.getElementById("sim-form");
  fillSelect(form.drug, Object.keys(options.drugs), "racemic-ketamine");
  for (const select of form.querySelectorAll("select[data-choice]")) {
    const values = options.patient[select.dataset.choice];
    fillSelect(select, values, values.includes("normal") ? "normal" : values[0]);
  }
  form.sex.value = "female";
  form.bdnf.value = "val/val";
  for (const kind of options.therapies) form.therapy.append(el("option", { value: kind, text: kind }));
  const comeds = document.getElementById("comedications");
  for (const name of options.patient.comedications) {
    comeds.append(el("label", {}, el("input", { type: "checkbox", name: "comedication", value: name }), name));
  }
  const mechanisms = document.getElementById("mechanisms");
  for (const m of options.mechanisms) {
    const box = el("input", { type: "checkbox", name: "mechanism", value: m.name });
    box.checked = m.calibrated_model;
    mechanisms.append(el("label", { title: m.title }, box, `${m.name} (${m.kind})`));
  }
  updateRoutes();
  form.route.value = "iv";
  updateDoseFields();
  form.drug.addEventListener("change", () => { updateRoutes(); updateDoseFields(); });
  form.route.addEventListener("change", updateDoseFields);
  const rerun = debounce(runSimulation, 350);
  form.addEventListener("input", rerun);
  form.addEventListener("change", rerun);
  form.addEventListener("submit", (event) => { event.preventDefault(); runSimulation(); });
}

function updateRoutes() {
  const form = document.getElementById("sim-form");
  const routes = OPTIONS.drugs[form.drug.value];
  const previous = form.route.value;
  fillSelect(form.route, routes, routes.includes(previous) ? previous : routes[0]);
}

function updateDoseFields() {
  const form = document.getElementById("sim-form");
  const inert = OPTIONS.inert_drugs.includes(form.drug.value);
  form.querySelector("label.amount").hidden = inert;
  // a gas is dosed as an inspired concentration, every other drug in mg or mg/kg
  const gas = OPTIONS.gases.includes(form.drug.value);
  for (const option of form.amountUnit.options) option.disabled = gas !== (option.value === "%");
  if (gas !== (form.amountUnit.value === "%")) {
    form.amountUnit.value = gas ? "%" : "mg/kg";
    form.amount.value = gas ? 50 : 0.5;
  }
  form.querySelector("label.iv-only").hidden = form.route.value !== "iv" && form.route.value !== "inhaled";
}

// Output spacing: the finest of a few steps that keeps the curves under about 3000 points.
function outputEvery(days) {
  const minutes = (days * 1440) / 3000;
  for (const step of [1, 2, 5, 10, 15, 30, 60, 120, 240]) if (step >= minutes) return `${step} min`;
  return "480 min";
}

function scenarioFromForm() {
  const f = document.getElementById("sim-form");
  const dose = { drug: f.drug.value, route: f.route.value };
  if (!OPTIONS.inert_drugs.includes(dose.drug)) dose.amount = `${f.amount.value} ${f.amountUnit.value}`;
  if (dose.route === "iv" && Number(f.infusion.value) > 0) dose.duration = `${f.infusion.value} min`;
  if (OPTIONS.gases.includes(dose.drug)) dose.duration = `${Number(f.infusion.value) || 60} min`;
  dose.start = `${f.start.value || 0} h`;
  const count = Math.max(1, Math.round(Number(f.count.value) || 1));
  dose.count = count;
  if (count > 1) dose.every = `${f.every.value} d`;
  const comedications = [...f.querySelectorAll("input[name=comedication]:checked")].map((box) => box.value);
  const scenario = {
    patient: {
      weight: `${f.weight.value} kg`, age: `${f.age.value} y`, sex: f.sex.value, baseline_madrs: Number(f.baseline.value),
      cyp2b6: f.cyp2b6.value, cyp3a4: f.cyp3a4.value, bdnf_val66met: f.bdnf.value, inflammation: f.inflammation.value,
      comedications,
    },
    dose: [dose],
    simulation: { duration: `${f.days.value} d`, output_every: outputEvery(Number(f.days.value) || 1) },
    model: { mechanisms: [...f.querySelectorAll("input[name=mechanism]:checked")].map((box) => box.value) },
  };
  if (f.therapy.value !== "none") {
    const sessions = Math.max(1, Math.round(Number(f.therapyCount.value) || 1));
    const therapy = { kind: f.therapy.value, start: `${f.therapyStart.value} d`, count: sessions };
    if (sessions > 1) therapy.every = `${f.therapyEvery.value} d`;
    scenario.therapy = [therapy];
  }
  return scenario;
}

// ------------------------------------------------------------------ simulation: run and draw
let simulationRequest = 0;

async function runSimulation() {
  const status = document.getElementById("sim-status");
  const request = ++simulationRequest;  // answers to older requests are dropped
  setStatus(status, "running", "simulating…");
  try {
    const result = await api("/api/simulate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(scenarioFromForm()),
    });
    if (request !== simulationRequest) return;
    drawSimulation(result);
    showSummary(result);
    setStatus(status, "done", `run ${result.run_id.slice(0, 8)} · model ${result.model_version} · ` +
      `${result.time.values.length} time points`);
  } catch (error) {
    if (request === simulationRequest) setStatus(status, "error", error.message);
  }
}

// The layers, top to bottom, on one shared time axis. Units come from the answer, not from here.
const PANELS = [
  { title: "Plasma and brain concentrations", axis: "concentration", series: [
    ["pk.ketamine_plasma", "ketamine, plasma"], ["pk.ketamine_brain", "ketamine, brain"],
    ["comparators.midazolam_plasma", "midazolam, plasma"], ["comparators.ssri_plasma", "SSRI, plasma"]], dropFlat: true },
  { title: "NMDA receptor block", axis: "block", series: [["receptor.nmda_block_interneuron", "interneurons"],
    ["receptor.nmda_block_pyramidal", "pyramidal cells"]] },
  { title: "Glutamate surge", axis: "glutamate", series: [["synapse.glutamate", "glutamate"]] },
  { title: "BDNF and mTORC1", axis: "level", series: [["plasticity.bdnf", "BDNF"], ["plasticity.mtorc1", "mTORC1"]] },
  { title: "Spine density (new synapses)", axis: "density", series: [["plasticity.spine_density", "spine density"]] },
  { title: "IL-6", axis: "IL-6", series: [["inflammation.il6", "IL-6"]] },
  { title: "Kynurenine pathway", axis: "concentration", series: [["inflammation.kynurenine", "kynurenine"],
    ["inflammation.quinolinic_acid", "quinolinic acid"], ["inflammation.kynurenic_acid", "kynurenic acid"]] },
  { title: "PFC–amygdala connectivity", axis: "FC", series: [["circuit.pfc_amygdala_fc", "PFC–amygdala FC"]] },
  { title: "Depression (MADRS)", axis: "MADRS", series: [["clinical.madrs", "MADRS"]], madrsLines: true },
  { title: "Dissociation (CADSS)", axis: "CADSS", series: [["clinical.cadss", "CADSS"]] },
  { title: "Blood pressure", axis: "pressure", series: [["clinical.sbp", "systolic"], ["clinical.dbp", "diastolic"]] },
];
const PANEL_HEIGHT = 150;

// The part of the course on the time axis: all of it, or the first day or week (zooming one panel zooms all).
function timeWindow() {
  const hours = document.getElementById("time-window").value;
  return hours === "all" ? { autorange: true } : { range: [0, Number(hours)], autorange: false };
}

function isFlat(values) {
  return values.every((v) => v === null || Math.abs(v) < 1e-9);
}

function drawSimulation(result) {
  const byName = Object.fromEntries(result.series.map((s) => [s.name, s]));
  const time = result.time.values;
  const n = PANELS.length;
  const gap = 0.25 / n;
  const traces = [];
  const layout = {
    height: n * PANEL_HEIGHT + 70, margin: { l: 70, r: 20, t: 20, b: 50 }, hovermode: "x",
    xaxis: { title: { text: `${result.time.name} [${result.time.unit}]` }, anchor: `y${n}`, showspikes: true,
      spikemode: "across", spikethickness: 1, spikedash: "dot", ...timeWindow() },
    annotations: [],
  };
  PANELS.forEach((panel, i) => {
    const axis = i === 0 ? "y" : `y${i + 1}`;
    const top = 1 - i / n;
    const domain = [Math.max(0, top - 1 / n + gap), top - gap / 2];
    const present = panel.series.filter(([name]) => byName[name] && !(panel.dropFlat && isFlat(byName[name].values)));
    const unit = present.length ? byName[present[0][0]].unit : "";
    layout[i === 0 ? "yaxis" : `yaxis${i + 1}`] = { domain, anchor: "x", title: { text: `${panel.axis} [${unit}]`, font: { size: 11 } },
      zeroline: false };
    const legend = i === 0 ? "legend" : `legend${i + 1}`;  // one legend per panel, at its top right
    layout[legend] = { x: 1, xanchor: "right", y: domain[1], yanchor: "top", bgcolor: "rgba(255,255,255,0.7)",
      font: { size: 10 } };
    layout.annotations.push({ text: `<b>${panel.title}</b>`, xref: "paper", yref: "paper", x: 0, y: domain[1],
      xanchor: "left", yanchor: "bottom", showarrow: false, font: { size: 12 } });
    present.forEach(([name, label], k) => {
      const s = byName[name];
      traces.push({ x: time, y: s.values, name: label, yaxis: axis, legend, type: "scatter", mode: "lines",
        line: { color: COLORS[k % COLORS.length], width: 1.6 },
        hovertemplate: `${label}: %{y:.4g} ${s.unit}<extra></extra>`, meta: { output: name } });
    });
    if (panel.madrsLines && byName["clinical.madrs"]) addMadrsLines(traces, byName["clinical.madrs"], time, axis, legend);
  });
  Plotly.react("chart-sim", traces, layout, PLOT_CONFIG);
}

// Response: MADRS at or below half the baseline; remission: MADRS at or below 10 points.
function addMadrsLines(traces, madrs, time, axis, legend) {
  const baseline = madrs.values[0];
  const ends = [time[0], time[time.length - 1]];
  traces.push({ x: ends, y: [baseline / 2, baseline / 2], yaxis: axis, legend, mode: "lines", name: "response line",
    line: { color: "#2e9e6a", dash: "dot", width: 1 }, hovertemplate: `response (≤ 50 % of baseline): %{y:.3g} ${madrs.unit}<extra></extra>` });
  traces.push({ x: ends, y: [10, 10], yaxis: axis, legend, mode: "lines", name: "remission line",
    line: { color: "#7a4fb5", dash: "dash", width: 1 }, hovertemplate: `remission (MADRS ≤ 10): %{y:.3g} ${madrs.unit}<extra></extra>` });
}

function summaryItems(summary) {
  const madrs = summary["clinical.madrs"] || {};
  const plasma = summary["pk.ketamine_plasma"] || {};
  const block = summary["receptor.nmda_block_interneuron"] || {};
  return [
    ["cmax", "ketamine plasma Cmax", plasma.cmax],
    ["tmax", "ketamine plasma Tmax", plasma.tmax],
    ["nmda-peak", "NMDA block (interneurons), peak", block.peak],
    ["madrs-baseline", "MADRS at baseline", madrs.baseline],
    ["madrs-24h", "MADRS at 24 h", madrs["at 24 h"]],
    ["madrs-7d", "MADRS at 7 d", madrs["at 7 d"]],
    ["response", "time to response", madrs.time_to_response],
    ["cadss", "CADSS peak", (summary["clinical.cadss"] || {}).peak],
    ["sbp", "systolic BP, peak rise", (summary["clinical.sbp"] || {}).peak_rise],
  ];
}

function showSummary(result) {
  const list = document.getElementById("sim-summary");
  list.replaceChildren(...summaryItems(result.summary).map(([id, label, q]) => {
    const value = q ? (q.value === null ? "not reached" : `${fmt(q.value)} ${q.unit}`) : "–";
    const dd = el("dd", { id: `sum-${id}`, text: value });
    if (q && q.value !== null) dd.dataset.value = q.value;
    return el("div", {}, el("dt", { text: label }), dd);
  }));
}

// ------------------------------------------------------------------ virtual trial
let EXAMPLES = [];
let trialPoll = null;
let currentTrial = null; // answers about an earlier run (a poll still in flight) are dropped

async function loadExamples() {
  if (EXAMPLES.length) return;
  EXAMPLES = (await api("/api/examples")).trials;
  const select = document.getElementById("trial-example");
  fillSelect(select, []);
  for (const example of EXAMPLES) select.append(el("option", { value: example.id, text: `${example.name} (${example.design})` }));
  select.addEventListener("change", () => {
    document.getElementById("trial-toml").value = EXAMPLES.find((e) => e.id === select.value).toml;
  });
  const first = EXAMPLES.find((e) => e.design === "parallel") || EXAMPLES[0];
  select.value = first.id;
  document.getElementById("trial-toml").value = first.toml;
}

async function startTrial() {
  const status = document.getElementById("trial-status");
  const report = document.getElementById("trial-report");
  clearInterval(trialPoll);
  report.replaceChildren();
  report.dataset.state = "empty";
  try {
    const run = await api("/api/trials", {
      method: "POST", headers: { "Content-Type": "application/toml" }, body: document.getElementById("trial-toml").value,
    });
    currentTrial = run.id;
    showTrialProgress(run);
    trialPoll = setInterval(() => pollTrial(run.id), 500);
  } catch (error) {
    setStatus(status, "error", error.message);
  }
}

function showTrialProgress(run) {
  const p = run.progress;
  document.getElementById("trial-progress").value = p.fraction;
  setStatus(document.getElementById("trial-status"), run.status, `${run.status}: ${p.done} / ${p.total} ${p.unit}`);
}

async function pollTrial(id) {
  let run;
  try {
    run = await api(`/api/trials/${id}`);
  } catch (error) {
    if (id !== currentTrial) return;
    clearInterval(trialPoll);
    setStatus(document.getElementById("trial-status"), "error", error.message);
    return;
  }
  if (id !== currentTrial) return;
  showTrialProgress(run);
  if (run.status === "queued" || run.status === "running") return;
  clearInterval(trialPoll);
  if (run.status === "done") showTrialReport(run);
  else setStatus(document.getElementById("trial-status"), "error", `${run.status}: ${run.error || ""}`);
}

function showTrialReport(run) {
  const report = document.getElementById("trial-report");
  const summary = run.summary;
  const patients = summary.patients;
  report.replaceChildren(
    el("h2", { text: `${summary.trial.name} (${summary.trial.design})` }),
    el("p", { text: `${patients.simulated} patients simulated, ${patients.failed} not finished by the solver; ` +
      `seed ${summary.trial.seed}; run ${run.id.slice(0, 8)}. ${summary.disclaimer}` }),
    el("p", {}, "Download the patients table: ",
      el("a", { href: withToken(run.links.patients_parquet), id: "download-parquet", text: "Parquet" }), " · ",
      el("a", { href: withToken(run.links.patients_csv), id: "download-csv", text: "CSV" }), " · ",
      el("a", { href: withToken(run.links.report_html), target: "_blank", text: "full HTML report" })),
    el("div", { id: "chart-trajectories", class: "chart" }),
    el("div", { id: "chart-rates", class: "chart" }),
    el("div", { id: "chart-relapse", class: "chart" }),
    el("h3", { text: "Side effects" }), sideEffectTable(summary),
    el("h3", { text: "Ketamine use over the course" }), ketamineUseTable(summary),
    el("h3", { text: "Between arms" }), comparisonTable(summary),
  );
  drawTrajectories(run.figures.trajectories);
  drawRates(summary);
  drawRelapse(run.figures.relapse_free);
  report.dataset.state = "done";
}

const days = (hours) => hours.map((h) => h / 24);

function drawTrajectories(trajectories) {
  const traces = [];
  trajectories.forEach((t, k) => {
    const color = COLORS[k % COLORS.length];
    const x = days(t["time [h]"]);
    traces.push({ x: [...x, ...x.slice().reverse()], y: [...t["p90 [points]"], ...t["p10 [points]"].slice().reverse()],
      fill: "toself", fillcolor: color + "1f", line: { width: 0 }, mode: "lines", name: `${t.arm}: 10–90 % of patients`,
      hoverinfo: "skip" });
    traces.push({ x, y: t["mean [points]"], name: `${t.arm}: mean`, mode: "lines+markers", line: { color },
      error_y: { type: "data", symmetric: false, color,
        array: t["upper [points]"].map((u, i) => (u === null ? null : u - t["mean [points]"][i])),
        arrayminus: t["lower [points]"].map((l, i) => (l === null ? null : t["mean [points]"][i] - l)) },
      hovertemplate: `${t.arm}: %{y:.3g} points (mean) at %{x:.3g} d<extra></extra>` });
  });
  Plotly.react("chart-trajectories", traces, {
    title: { text: "MADRS trajectories (mean with 95 % CI, 10–90 % range)" }, height: 340,
    xaxis: { title: { text: "time from the start of the period [d]" } }, yaxis: { title: { text: "MADRS [points]" } },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 10, y1: 10, line: { dash: "dot", color: "grey", width: 1 } }],
    margin: { t: 40 },
  }, PLOT_CONFIG);
}

function drawRates(summary) {
  const traces = [];
  Object.entries(summary.arms).forEach(([arm, s], k) => {
    const x = days(s.assessments.map((a) => a["assessment [h]"]));
    for (const [key, axis, label] of [["response_rate", "y", "response"], ["remission_rate", "y2", "remission"]]) {
      const est = s.assessments.map((a) => (a[key].estimate === null ? null : 100 * a[key].estimate));
      traces.push({ x, y: est, yaxis: axis, xaxis: axis === "y" ? "x" : "x2", name: `${arm}: ${label}`, mode: "lines+markers",
        line: { color: COLORS[k % COLORS.length], dash: axis === "y" ? "solid" : "dash" },
        error_y: { type: "data", symmetric: false,
          array: s.assessments.map((a, i) => (a[key].upper === null || est[i] === null ? null : 100 * a[key].upper - est[i])),
          arrayminus: s.assessments.map((a, i) => (a[key].lower === null || est[i] === null ? null : est[i] - 100 * a[key].lower)) },
        hovertemplate: `${arm}, ${label}: %{y:.3g} % at %{x:.3g} d<extra></extra>` });
    }
  });
  Plotly.react("chart-rates", traces, {
    title: { text: "Response and remission rates (Wilson 95 % CI)" }, height: 320, grid: { rows: 1, columns: 2, pattern: "independent" },
    xaxis: { title: { text: "time [d]" } }, xaxis2: { title: { text: "time [d]" } },
    yaxis: { title: { text: "response [% of patients]" }, range: [0, 100] },
    yaxis2: { title: { text: "remission [% of patients]" }, range: [0, 100] }, margin: { t: 40 },
  }, PLOT_CONFIG);
}

function drawRelapse(curves) {
  const traces = curves.map((c, k) => ({
    x: days(c["time [h]"]), y: c["survival [fraction]"].map((v) => (v === null ? null : 100 * v)), line: { shape: "hv",
      color: COLORS[k % COLORS.length] }, mode: "lines", name: `${c.arm} (responders at risk: ${c.at_risk})`,
    hovertemplate: `${c.arm}: %{y:.3g} % free of relapse at %{x:.3g} d<extra></extra>`,
  }));
  Plotly.react("chart-relapse", traces, {
    title: { text: curves.length ? "Relapse among responders (Kaplan–Meier)" : "Relapse: no responders at risk" }, height: 300,
    xaxis: { title: { text: "time from response [d]" } },
    yaxis: { title: { text: "responders free of relapse [%]" }, range: [0, 105] }, margin: { t: 40 },
  }, PLOT_CONFIG);
}

function interval(d, scale = 1, unit = "") {
  if (!d || d.estimate === null || d.estimate === undefined) return "–";
  if (typeof d.estimate !== "number") return String(d.estimate);  // e.g. a median "not reached"
  const show = (x) => (typeof x === "number" ? fmt(scale * x) : x === null ? "–" : String(x));
  return `${show(d.estimate)}${unit} (${show(d.lower)}–${show(d.upper)})`;
}

function table(headers, rows) {
  return el("div", { class: "table-wrap" }, el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", { text: c })))))));
}

// abuse liability: each patient's highest session peak on the bipolar drug-liking scale (model/clinical.py)
const LIKING = "drug_liking_peak [points]";

// the discharge readings shown (trial/discharge.py: each patient's slowest session)
const DISCHARGE_KEYS = ["ready_by_1.5_h", "not_ready_at_2_h"];

function sideEffectTable(summary) {
  const isRate = ([, v]) => v && typeof v === "object" && "estimate" in v;
  // a patients table written before drug liking was recorded has no such column, as in the report
  const liking = Object.values(summary.arms).some((s) => LIKING in s.side_effects);
  const rows = Object.entries(summary.arms).map(([arm, s]) => {
    const se = s.side_effects;
    const incidence = Object.entries(se).filter(isRate);
    return [arm, ...incidence.map(([, v]) => interval(v, 100, " %")),
      `${fmt(se["cadss_peak [points]"].mean)} (max ${fmt(se["cadss_peak [points]"].max)})`,
      `${fmt(se["sbp_peak_rise [mmHg]"].mean)} (max ${fmt(se["sbp_peak_rise [mmHg]"].max)})`,
      ...(liking ? [se[LIKING] ? `${fmt(se[LIKING].mean)} (max ${fmt(se[LIKING].max)})` : "–"] : []),
      ...DISCHARGE_KEYS.map((k) => interval((se.discharge || {})[k], 100, " %")),
      interval(s.relapse["median_time_to_relapse [h]"], 1 / 24, " d")];
  });
  const first = Object.values(summary.arms)[0];
  const names = first ? Object.entries(first.side_effects).filter(isRate).map(([k]) => k) : [];
  return table(["arm", ...names.map((n) => `${n.replaceAll("_", " ")} [% (95 % CI)]`), "CADSS peak, mean [points]",
    "SBP peak rise, mean [mmHg]", ...(liking ? ["drug liking peak, mean [points; 50 neutral, 100 strongest liking]"] : []),
    ...DISCHARGE_KEYS.map((k) => `discharge: ${k.replaceAll("_", " ")} [% (95 % CI)]`),
    "median time to relapse [d] (95 % CI)"], rows);
}

// trial/ketamine_use.py: amounts and dosing days per patient over the course, and the frequent-use flags
// (dosing patterns from published reports, not predictions of injury)
const USE_VALUES = ["ketamine_amount [mg]", "ketamine_dosing_days [days]", "ketamine_dosing_days_max_7d [days]",
  "ketamine_dosing_days_max_180d [days]"];
const USE_FLAGS = ["beyond_label_frequency", "daily_use"];

function ketamineUseTable(summary) {
  const rows = Object.entries(summary.arms).map(([arm, s]) => {
    const u = s.ketamine_use || {};
    return [arm, ...USE_VALUES.map((k) => (u[k] ? `${fmt(u[k].mean)} (max ${fmt(u[k].max)})` : "–")),
      ...USE_FLAGS.map((f) => interval(u[`${f}_fraction`], 100, " %"))];
  });
  const flags = Object.values(summary.arms)[0]?.ketamine_use?.flags || {};
  return el("div", { id: "ketamine-use" },
    table(["arm", ...USE_VALUES.map((k) => `${k.replaceAll("_", " ")}, mean`),
      ...USE_FLAGS.map((f) => `${f.replaceAll("_", " ")} [% (95 % CI)]`)], rows),
    el("p", { class: "tagline", text: USE_FLAGS.map((f) => `${f.replaceAll("_", " ")}: ${flags[f] || ""}.`).join(" ") }));
}

function comparisonTable(summary) {
  const rows = [];
  for (const c of summary.comparisons || []) {
    for (const a of c.assessments) {
      rows.push([`${c.arm} vs ${c.control}`, fmt(a["assessment [h]"] / 24), interval(a["difference_in_madrs_change [points]"]),
        interval(a.odds_ratio_response)]);
    }
  }
  return table(["comparison", "time [d]", "difference in MADRS change [points] (95 % CI)", "odds ratio for response (95 % CI)"],
    rows);
}

// ------------------------------------------------------------------ sources
let PARAMETERS = null;

async function loadSources() {
  if (PARAMETERS) return;
  const answer = await api("/api/parameters");
  PARAMETERS = answer.parameters;
  document.getElementById("sources-hash").textContent = `${answer.count} parameters; parameter-set SHA-256 ${answer.parameter_hash}.`;
  const filter = document.getElementById("sources-filter");
  filter.addEventListener("input", () => showSources(filter.value));
  showSources("");
}

function showSources(query) {
  const q = query.trim().toLowerCase();
  const rows = PARAMETERS.filter((p) => !q || `${p.name} ${p.source} ${p.description}`.toLowerCase().includes(q));
  document.querySelector("#sources-table tbody").replaceChildren(...rows.map((p) => el("tr", {},
    el("td", {}, el("code", { text: p.name })), el("td", { text: fmt(p.value, 4) }), el("td", { text: p.unit }),
    el("td", { text: `${fmt(p.range[0])}–${fmt(p.range[1])}` }), el("td", { text: fmt(p.cv) }),
    el("td", { text: p.provenance }), el("td", { text: p.source }), el("td", { text: p.description }))));
}

// ------------------------------------------------------------------ runs
async function loadRuns() {
  const answer = await api("/api/runs?limit=200");
  document.querySelector("#runs-table tbody").replaceChildren(...answer.runs.map((r) => {
    const results = r.kind === "trial" && r.status === "done"
      ? el("a", { href: withToken(`/api/trials/${r.id}/report`), target: "_blank", text: "report" }) : (r.error || r.result_path || "");
    return el("tr", {}, el("td", {}, el("code", { text: r.id.slice(0, 8) })), el("td", { text: r.kind }),
      el("td", { text: r.status }), el("td", { text: r.created.replace("T", " ").slice(0, 19) }),
      el("td", { text: fmt(r.wall_time.value) }), el("td", { text: `${r.progress.done} / ${r.progress.total}` }),
      el("td", { text: r.model_version }), el("td", {}, el("code", { text: r.parameter_hash.slice(0, 12) })), el("td", {}, results));
  }));
}

// ------------------------------------------------------------------ start
async function start() {
  for (const button of document.querySelectorAll("nav button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  tabLoaders.trial = () => loadExamples().catch((e) => setStatus(document.getElementById("trial-status"), "error", e.message));
  tabLoaders.sources = () => loadSources().catch((e) => { document.getElementById("sources-hash").textContent = e.message; });
  tabLoaders.runs = () => loadRuns().catch(() => {});
  document.getElementById("trial-run").addEventListener("click", startTrial);
  document.getElementById("time-window").addEventListener("change", () => {
    const axis = timeWindow();
    Plotly.relayout("chart-sim", axis.range ? { "xaxis.range": axis.range } : { "xaxis.autorange": true });
  });
  document.getElementById("runs-refresh").addEventListener("click", loadRuns);
  try {
    OPTIONS = await api("/api/options");
    document.getElementById("disclaimer-text").textContent = OPTIONS.disclaimer;
    setUpForm(OPTIONS);
    await runSimulation();
  } catch (error) {
    setStatus(document.getElementById("sim-status"), "error", error.message);
  }
}

document.addEventListener("DOMContentLoaded", start);
