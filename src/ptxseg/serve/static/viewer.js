// ptxseg web viewer: upload radiographs, draw the pneumothorax and lung fields, show the findings.
// Plain JS, no build step. Every API call carries the bearer token when the server asks for one.
"use strict";

const SEVERITY_RANK = { severe: 3, moderate: 2, mild: 1, none: 0 };
const LABEL = { ptx: 1, right: 2, left: 4 }; // bits of view_labels.png
const state = { results: [], selected: null, layers: null };

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem("ptxseg-token") || "";

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    $("token-form").hidden = false;
    throw new Error("this server needs an access token");
  }
  return response;
}

async function blobUrl(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return URL.createObjectURL(await response.blob());
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function fmtPct(v) { return v === null || v === undefined ? "—" : `${v.toFixed(1)} %`; }
function fmtProb(v) { return v === null || v === undefined ? "—" : v.toFixed(3); }

function triageKey(doc) {
  return [-(SEVERITY_RANK[doc.max_severity] ?? -1), -doc.pneumothorax.probability, -doc._received];
}

function sortResults() {
  state.results.sort((a, b) => {
    const ka = triageKey(a), kb = triageKey(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
    return 0;
  });
}

function renderList() {
  const list = $("results");
  list.textContent = "";
  for (const doc of state.results) {
    const li = document.createElement("li");
    li.dataset.id = doc.id;
    li.className = doc.id === state.selected?.id ? "selected" : "";
    const dot = document.createElement("span");
    dot.className = "dot";
    dot.style.background = `var(--${doc.max_severity || "none"})`;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = doc.input.path;
    name.title = `${doc.input.path} — ${doc.max_severity || "no severity"}`;
    const prob = document.createElement("span");
    prob.className = "prob";
    prob.textContent = fmtProb(doc.pneumothorax.probability);
    li.append(dot, name, prob);
    li.addEventListener("click", () => select(doc));
    list.append(li);
  }
}

function field(name, text, value) {
  for (const el of document.querySelectorAll(`[data-field="${name}"]`)) {
    el.textContent = text;
    if (value !== undefined) el.dataset.value = value === null ? "" : String(value);
  }
}

function renderFindings(doc) {
  $("findings").hidden = false;
  const p = doc.pneumothorax;
  $("f-title").textContent = doc.input.path;
  const headline = $("f-headline");
  const sev = doc.max_severity;
  headline.className = `headline sev-${sev || "none"}`;
  headline.textContent = p.present
    ? `Pneumothorax — ${sev && sev !== "none" ? sev : "size unknown"}`
    : "No pneumothorax outlined";
  headline.dataset.present = String(p.present);
  // a model trained on synthetic data: said before any finding, in the words of the result document
  const warnings = doc.model_warnings || [];
  $("f-model-warning").hidden = warnings.length === 0;
  $("f-model-warning").textContent = warnings.map((w) => `Warning: ${w}.`).join(" ");
  field("probability", fmtProb(p.probability), p.probability);
  field("probability_std", fmtProb(doc.uncertainty.probability_std), doc.uncertainty.probability_std);
  field("area", p.area_mm2 !== null ? `${(p.area_mm2 / 100).toFixed(1)} cm²` : `${p.area_px} px`, p.area_px);
  for (const side of ["right", "left"]) {
    field(`${side}_ratio`, fmtPct(doc[side].ratio_pct), doc[side].ratio_pct);
    field(`${side}_severity`, doc[side].severity ?? "—", doc[side].severity);
  }
  const qc = doc.qc;
  const problems = [...qc.warnings, ...(qc.flags || [])];
  const eligible = qc.triage_eligible === false ? " — not fit for triage" : "";
  field("qc", problems.length ? `${qc.verdict}: ${problems.join(", ")}${eligible}` : `ok${eligible}`, qc.verdict);
  document.querySelector('[data-field="qc"]').classList.toggle("warn", problems.length > 0 || qc.triage_eligible === false);
  const links = { "dl-mask": doc.urls.mask, "dl-overlay": doc.urls.overlay, "dl-seg": doc.urls.seg, "dl-json": doc.urls.result };
  for (const [id, url] of Object.entries(links)) {
    const a = $(id);
    a.classList.toggle("disabled", !url);
    a.dataset.url = url || "";
    a.removeAttribute("href");
  }
  const lung = doc.lung_model ? `; lung fields ${doc.lung_model.name}` : "; no lung-field model";
  $("f-model").textContent = `${doc.model.name} (${doc.model.version})${lung}. Not a medical device.`;
}

// Downloads go through fetch so that the token travels with them.
for (const id of ["dl-mask", "dl-overlay", "dl-seg", "dl-json"]) {
  $(id).addEventListener("click", async (event) => {
    const a = event.currentTarget;
    if (a.getAttribute("href") || !a.dataset.url) return;
    event.preventDefault();
    a.href = await blobUrl(a.dataset.url);
    const parts = a.dataset.url.split("/");
    a.download = id === "dl-json" ? `${parts[parts.length - 1]}.json` : `${parts[parts.length - 2]}_${parts[parts.length - 1]}`;
    a.click();
  });
}

async function loadImage(url) {
  const img = new Image();
  img.src = url;
  await img.decode();
  return img;
}

async function select(doc) {
  state.selected = doc;
  renderList();
  renderFindings(doc);
  const base = doc.urls.result;
  const [picture, labels] = await Promise.all([loadImage(await blobUrl(`${base}/view.png`)), loadImage(await blobUrl(`${base}/view_labels.png`))]);
  const w = picture.naturalWidth, h = picture.naturalHeight;
  const scratch = document.createElement("canvas");
  scratch.width = w; scratch.height = h;
  const sctx = scratch.getContext("2d", { willReadFrequently: true });
  sctx.drawImage(labels, 0, 0);
  const raw = sctx.getImageData(0, 0, w, h).data;
  const bits = new Uint8Array(w * h);
  for (let i = 0; i < bits.length; i++) bits[i] = raw[4 * i];
  state.layers = { picture, bits, w, h, doc };
  $("empty").hidden = true;
  draw();
}

function edge(bits, w, h, bit, i) {
  const x = i % w, y = (i / w) | 0;
  if (!(bits[i] & bit)) return false;
  return x === 0 || y === 0 || x === w - 1 || y === h - 1 ||
    !(bits[i - 1] & bit) || !(bits[i + 1] & bit) || !(bits[i - w] & bit) || !(bits[i + w] & bit);
}

function centroid(bits, w, bit) {
  let sx = 0, sy = 0, n = 0, top = Infinity;
  for (let i = 0; i < bits.length; i++) if (bits[i] & bit) { const x = i % w, y = (i / w) | 0; sx += x; sy += y; n++; if (y < top) top = y; }
  return n ? { x: sx / n, y: sy / n, top } : null;
}

function draw() {
  const L = state.layers;
  if (!L) return;
  const canvas = $("canvas");
  canvas.width = L.w; canvas.height = L.h;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(L.picture, 0, 0);
  const out = ctx.getImageData(0, 0, L.w, L.h);
  const px = out.data;
  const fill = $("show-fill").checked, outline = $("show-outline").checked, lungs = $("show-lungs").checked;
  const alpha = Number($("opacity").value) / 100;
  const paint = (i, r, g, b, a) => {
    px[4 * i] = px[4 * i] * (1 - a) + r * a;
    px[4 * i + 1] = px[4 * i + 1] * (1 - a) + g * a;
    px[4 * i + 2] = px[4 * i + 2] * (1 - a) + b * a;
  };
  for (let i = 0; i < L.bits.length; i++) {
    const v = L.bits[i];
    if (!v) continue;
    if (lungs && edge(L.bits, L.w, L.h, LABEL.right, i)) paint(i, 63, 182, 255, 0.9);
    if (lungs && edge(L.bits, L.w, L.h, LABEL.left, i)) paint(i, 86, 211, 100, 0.9);
    if (fill && v & LABEL.ptx) paint(i, 255, 90, 90, alpha);
    if (outline && edge(L.bits, L.w, L.h, LABEL.ptx, i)) paint(i, 255, 211, 61, 1);
  }
  ctx.putImageData(out, 0, 0);
  const font = Math.max(14, Math.round(L.w / 28));
  ctx.font = `700 ${font}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  for (const [side, bit, colour] of [["R", LABEL.right, "#3fb6ff"], ["L", LABEL.left, "#56d364"]]) {
    const c = centroid(L.bits, L.w, bit);
    if (!c) continue;
    ctx.fillStyle = "rgba(0,0,0,.6)";
    ctx.fillText(side, c.x + 2, Math.max(font, c.top - font / 2) + 2);
    ctx.fillStyle = colour;
    ctx.fillText(side, c.x, Math.max(font, c.top - font / 2));
  }
  canvas.dataset.drawn = String(L.doc.id);
  canvas.dataset.fill = String(fill);
  canvas.dataset.outline = String(outline);
  canvas.dataset.lungs = String(lungs);
}

for (const id of ["show-fill", "show-outline", "show-lungs", "opacity"]) $(id).addEventListener("input", draw);

async function upload(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("file", f, f.name);
  setStatus(`Analysing ${files.length} radiograph${files.length > 1 ? "s" : ""}…`);
  let response;
  try {
    response = await api("/v1/predict", { method: "POST", body: form });
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  if (!response.ok) {
    setStatus(`${files.length > 1 ? "Upload" : files[0].name} refused: ${body.detail}`, true);
    return;
  }
  const items = body.results ? body.results : [body];
  const failures = items.filter((r) => r.status && r.status !== 200);
  const received = Date.now();
  const fresh = items.filter((r) => !r.status || r.status === 200).map((r) => Object.assign(r, { _received: received }));
  state.results.push(...fresh);
  sortResults();
  setStatus(
    `${fresh.length} analysed` + (failures.length ? `; ${failures.length} refused: ${failures.map((f) => `${f.file} (${f.detail})`).join("; ")}` : ""),
    failures.length > 0,
  );
  if (fresh.length) await select(fresh[0]);
  else renderList();
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload([...e.dataTransfer.files]); });
$("file-input").addEventListener("change", (e) => { upload([...e.target.files]); e.target.value = ""; });

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("ptxseg-token", $("token").value.trim());
  $("token-form").hidden = true;
  loadVersion();
});

async function loadVersion() {
  try {
    const response = await api("/version");
    const v = await response.json();
    const synthetic = (v.model_warnings || []).length ? " · TRAINED ON SYNTHETIC DATA: not for patients" : "";
    $("model").textContent = `ptxseg ${v.ptxseg} · ${v.model.name} · ${v.model.backend}${synthetic}`;
    $("model").classList.toggle("warn", synthetic !== "");
  } catch (err) {
    $("model").textContent = err.message;
  }
}

loadVersion();
