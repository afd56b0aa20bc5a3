// omniseg web page: plain JS, no build step. Talks to the JSON API of the same server (/v1/...).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  file: null, stem: "image", width: 0, height: 0,
  answer: null, map: null, names: [], colours: {}, unlabeled: 255, lastRequest: null,
  mode: "words", points: [], box: null, drag: null,
  example: { file: null, width: 0, height: 0, mask: null, painting: false, erase: false },
};

// ---- colours: the server sends the overlay's colour of each index present (omniseg.viz.class_colours) ----

// ---- small helpers ----
function setStatus(text) { $("status").textContent = text; }
function setError(text) { $("error").textContent = text || ""; }
function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
function imageXY(event, canvas, width, height) {
  const r = canvas.getBoundingClientRect();
  const x = Math.min(width - 1, Math.max(0, Math.floor((event.clientX - r.left) * width / r.width)));
  const y = Math.min(height - 1, Math.max(0, Math.floor((event.clientY - r.top) * height / r.height)));
  return [x, y];
}
function sizeCanvases(ids, width, height) {
  for (const id of ids) { $(id).width = width; $(id).height = height; }
}
// Shown as large as fits: the page's width and the window's height (a portrait photo stays in view).
function fitStack(stack, width, height, maxWidth) {
  stack.style.width = `min(100%, ${maxWidth}px, calc((100vh - 10em) * ${width / height}))`;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
// A single-channel 8-bit PNG of ids (what /v1/incontext wants as a mask); zlib via CompressionStream.
async function grayPng(width, height, values) {
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y++) raw.set(values.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const stream = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  const zdata = new Uint8Array(await new Response(stream).arrayBuffer());
  const chunk = (type, data) => {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  };
  const header = new Uint8Array(13);
  new DataView(header.buffer).setUint32(0, width);
  new DataView(header.buffer).setUint32(4, height);
  header[8] = 8; // bit depth; colour type 0 (grey), no interlace
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  return new Blob([signature, chunk("IHDR", header), chunk("IDAT", zdata), chunk("IEND", new Uint8Array(0))],
    { type: "image/png" });
}

// ---- talking to the API ----
async function post(path, form, query = "") {
  const response = await fetch(path + query, { method: "POST", body: form });
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return response;
}

async function runRequest(path, build) {
  if (!state.file) { setError("Pick or drop an image first."); return; }
  setError("");
  setStatus("Working…");
  document.body.classList.add("busy");
  const started = performance.now();
  try {
    const form = build();
    form.append("display", "true");
    const answer = await (await post(path, form)).json();
    state.lastRequest = { path, build };
    showAnswer(answer);
    setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(2)} s`);
  } catch (err) {
    setError(err.message);
    setStatus("Failed.");
  } finally {
    document.body.classList.remove("busy");
  }
}

function imageForm() {
  const form = new FormData();
  form.append("image", state.file, state.file.name || "image.png");
  return form;
}

function segmentForm() {
  const form = imageForm();
  const vocab = $("vocab").value;
  if (vocab) form.append("vocab", vocab); else form.append("classes", $("classes").value);
  form.append("task", $("task").value);
  return form;
}

function clickForm() {
  const form = imageForm();
  form.append("points", JSON.stringify(state.points.map((p) => [p.x, p.y, p.positive ? 1 : 0])));
  form.append("boxes", JSON.stringify(state.box ? [state.box] : []));
  const names = $("click-classes").value.trim();
  if (names) form.append("classes", names);
  return form;
}

function referForm() {
  const form = imageForm();
  form.append("phrase", $("phrase").value);
  return form;
}

async function incontextForm() {
  const ex = state.example;
  if (!ex.file) throw new Error("Pick an example image first.");
  if (!ex.mask.some((v) => v)) throw new Error("Paint on the example what to find.");
  const form = new FormData();
  form.append("example", ex.file, ex.file.name || "example.png");
  form.append("example_mask", await grayPng(ex.width, ex.height, ex.mask), "example_mask.png");
  form.append("target", state.file, state.file.name || "image.png");
  return form;
}

// ---- showing an answer: overlay, legend, hover ----
function decodeDisplay(display) {
  const bytes = Uint8Array.from(atob(display.data), (c) => c.charCodeAt(0));
  return display.dtype === "uint16" ? new Uint16Array(bytes.buffer) : bytes;
}

function showAnswer(answer) {
  const display = answer.display;
  delete answer.display;
  state.answer = answer;
  state.map = decodeDisplay(display);
  state.names = display.names;
  state.colours = display.colours || {};
  state.unlabeled = display.unlabeled;
  drawOverlay();
  drawLegend();
  $("hover").textContent = "\u00a0"; // the last hover read the previous answer
  $("download-png").disabled = false;
  $("download-json").disabled = false;
}

function drawOverlay() {
  const { width, height, map, unlabeled } = state;
  const canvas = $("overlay");
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(width, height);
  const colours = state.colours;
  const out = pixels.data;
  for (let i = 0; i < map.length; i++) {
    const k = map[i];
    if (k === unlabeled || !(k in colours)) continue;
    const edge = (i % width < width - 1 && map[i + 1] !== k) || (i + width < map.length && map[i + width] !== k);
    const c = colours[k];
    const dim = edge ? 0.35 : 1;
    out[4 * i] = c[0] * dim; out[4 * i + 1] = c[1] * dim; out[4 * i + 2] = c[2] * dim; out[4 * i + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
  canvas.dataset.ready = "1";
  applyOpacity();
}

function drawLegend() {
  const counts = new Map();
  for (const k of state.map) if (k !== state.unlabeled) counts.set(k, (counts.get(k) || 0) + 1);
  const colours = state.colours;
  const legend = $("legend");
  legend.replaceChildren();
  const entries = [...counts.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40);
  for (const [k, n] of entries) {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${colours[k].join(",")})`;
    const pct = (100 * n) / state.map.length;
    li.append(swatch, `${state.names[k]} ${pct < 1 ? "<1" : pct.toFixed(0)}%`);
    legend.append(li);
  }
  if (!entries.length) legend.textContent = "nothing found";
}

function applyOpacity() { $("overlay").style.opacity = $("opacity").value / 100; }

function hover(event) {
  if (!state.map) return;
  const [x, y] = imageXY(event, $("marks"), state.width, state.height);
  const k = state.map[y * state.width + x];
  const name = k === state.unlabeled ? "unlabeled" : state.names[k];
  $("hover").textContent = `${name} (${x}, ${y})`;
}

// ---- the image ----
async function loadImage(file) {
  if (!file || !file.type.startsWith("image/")) { setError("That is not an image."); return; }
  let bitmap;
  try { bitmap = await createImageBitmap(file); } catch (_) { setError("The browser cannot read that image."); return; }
  Object.assign(state, { file, stem: (file.name || "image").replace(/\.[^.]*$/, ""), width: bitmap.width,
    height: bitmap.height, answer: null, map: null, points: [], box: null, lastRequest: null });
  sizeCanvases(["image", "overlay", "marks"], bitmap.width, bitmap.height);
  fitStack($("stack"), bitmap.width, bitmap.height, 960);
  $("image").getContext("2d").drawImage(bitmap, 0, 0);
  $("overlay").dataset.ready = "";
  $("placeholder").classList.add("hidden");
  $("legend").replaceChildren();
  $("hover").textContent = "\u00a0";
  $("download-png").disabled = true;
  $("download-json").disabled = true;
  setError("");
  setStatus(`${bitmap.width}×${bitmap.height} image loaded.`);
}

// ---- interactive mode: points and a box ----
function drawMarks() {
  const canvas = $("marks");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const r = Math.max(4, Math.round(Math.max(state.width, state.height) / 120));
  ctx.lineWidth = Math.max(2, r / 2);
  const box = state.drag && state.drag.box ? state.drag.box : state.box;
  if (box) {
    ctx.strokeStyle = "#ff0";
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  }
  for (const p of state.points) {
    ctx.beginPath();
    ctx.arc(p.x, p.y, r, 0, 2 * Math.PI);
    ctx.fillStyle = p.positive ? "#2c2" : "#e22";
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  }
}

function marksDown(event) {
  if (state.mode !== "click" || !state.file) return;
  event.preventDefault();
  state.drag = { start: imageXY(event, $("marks"), state.width, state.height), client: [event.clientX, event.clientY],
    negative: event.button === 2 || event.shiftKey, box: null };
}

function marksMove(event) {
  hover(event);
  const drag = state.drag;
  if (!drag) return;
  if (Math.hypot(event.clientX - drag.client[0], event.clientY - drag.client[1]) < 6) return;
  const [x, y] = imageXY(event, $("marks"), state.width, state.height);
  const [x0, y0] = drag.start;
  drag.box = [Math.min(x, x0), Math.min(y, y0), Math.max(x, x0) + 1, Math.max(y, y0) + 1];
  drawMarks();
}

function marksUp() {
  const drag = state.drag;
  if (!drag) return;
  state.drag = null;
  if (drag.box) state.box = drag.box;
  else state.points.push({ x: drag.start[0], y: drag.start[1], positive: !drag.negative });
  drawMarks();
  if (state.points.some((p) => p.positive) || state.box) runRequest("/v1/click", clickForm);
}

// ---- in-context mode: paint a mask on the example ----
async function loadExample(file) {
  if (!file) return;
  const bitmap = await createImageBitmap(file);
  Object.assign(state.example, { file, width: bitmap.width, height: bitmap.height,
    mask: new Uint8Array(bitmap.width * bitmap.height) });
  sizeCanvases(["example-image", "example-paint"], bitmap.width, bitmap.height);
  $("example-image").getContext("2d").drawImage(bitmap, 0, 0);
}

function paintAt(event) {
  const ex = state.example;
  const canvas = $("example-paint");
  const [cx, cy] = imageXY(event, canvas, ex.width, ex.height);
  const scale = ex.width / canvas.getBoundingClientRect().width;
  const r = Math.max(1, Math.round(($("brush").value * scale) / 2));
  const value = ex.erase ? 0 : 1;
  for (let y = Math.max(0, cy - r); y <= Math.min(ex.height - 1, cy + r); y++) {
    for (let x = Math.max(0, cx - r); x <= Math.min(ex.width - 1, cx + r); x++) {
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) ex.mask[y * ex.width + x] = value;
    }
  }
  const ctx = canvas.getContext("2d");
  ctx.globalCompositeOperation = ex.erase ? "destination-out" : "source-over";
  ctx.fillStyle = "rgba(255, 40, 40, 0.55)";
  ctx.beginPath();
  ctx.arc(cx, cy, r, 0, 2 * Math.PI);
  ctx.fill();
}

// ---- wiring ----
function setMode(mode) {
  if (mode !== state.mode) {  // markers belong to the mode that made them
    state.points = [];
    state.box = null;
    state.drag = null;
    drawMarks();
  }
  state.mode = mode;
  for (const b of document.querySelectorAll("#modes button")) b.classList.toggle("active", b.dataset.mode === mode);
  for (const s of document.querySelectorAll(".mode")) s.classList.toggle("hidden", s.id !== `mode-${mode}`);
}

async function loadVocabularies() {
  try {
    const { vocabularies } = await (await fetch("/v1/vocabularies")).json();
    for (const v of vocabularies) {
      const option = document.createElement("option");
      option.value = v.name;
      option.textContent = `${v.name} (${v.classes} classes)`;
      $("vocab").append(option);
    }
  } catch (_) { /* the page works without them */ }
}

function init() {
  $("file").addEventListener("change", (e) => loadImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    loadImage(e.dataTransfer.files[0]);
  });
  for (const b of document.querySelectorAll("#modes button")) b.addEventListener("click", () => setMode(b.dataset.mode));
  $("run").addEventListener("click", () => runRequest("/v1/segment", segmentForm));
  $("classes").addEventListener("keydown", (e) => { if (e.key === "Enter") $("run").click(); });
  $("vocab").addEventListener("change", () => { $("classes").disabled = Boolean($("vocab").value); });
  $("refer").addEventListener("click", () => runRequest("/v1/refer", referForm));
  $("phrase").addEventListener("keydown", (e) => { if (e.key === "Enter") $("refer").click(); });
  $("opacity").addEventListener("input", applyOpacity);
  const marks = $("marks");
  marks.addEventListener("mousedown", marksDown);
  marks.addEventListener("mousemove", marksMove);
  window.addEventListener("mouseup", marksUp);
  marks.addEventListener("mouseleave", () => { $("hover").textContent = "\u00a0"; });
  marks.addEventListener("contextmenu", (e) => e.preventDefault());
  $("click-clear").addEventListener("click", () => { state.points = []; state.box = null; drawMarks(); });
  $("example-file").addEventListener("change", (e) => loadExample(e.target.files[0]));
  const paint = $("example-paint");
  paint.addEventListener("contextmenu", (e) => e.preventDefault());
  paint.addEventListener("mousedown", (e) => {
    if (!state.example.file) return;
    state.example.painting = true;
    state.example.erase = e.button === 2 || e.shiftKey;
    paintAt(e);
  });
  paint.addEventListener("mousemove", (e) => { if (state.example.painting) paintAt(e); });
  window.addEventListener("mouseup", () => { state.example.painting = false; });
  $("example-clear").addEventListener("click", () => {
    if (!state.example.file) return;
    state.example.mask.fill(0);
    paint.getContext("2d").clearRect(0, 0, paint.width, paint.height);
  });
  $("incontext").addEventListener("click", async () => {
    try {
      const form = await incontextForm();
      await runRequest("/v1/incontext", () => { const copy = new FormData(); for (const [k, v] of form) copy.append(k, v); return copy; });
    } catch (err) { setError(err.message); }
  });
  $("download-json").addEventListener("click", () => {
    saveBlob(new Blob([JSON.stringify(state.answer, null, 2)], { type: "application/json" }), `${state.stem}.json`);
  });
  $("download-png").addEventListener("click", async () => {
    if (!state.lastRequest) return;
    try {
      const response = await post(state.lastRequest.path, state.lastRequest.build(), "?format=png");
      saveBlob(await response.blob(), `${state.stem}_label.png`);
    } catch (err) { setError(err.message); }
  });
  loadVocabularies();
}

init();
