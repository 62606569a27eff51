// brats serve page: pick or upload a case, segment it through the job API, show it with NiiVue (vendored).
"use strict";

const MODS = ["t1", "t1ce", "t2", "flair"];
const MOD_NAMES = { t1: "T1", t1ce: "T1ce", t2: "T2", flair: "FLAIR" };
// File-name suffixes of the BraTS namings (2020/2021 and 2023) -> modality.
const SUFFIX = { t1: "t1", t1n: "t1", t1ce: "t1ce", t1c: "t1ce", t2: "t2", t2w: "t2", flair: "flair", t2f: "flair" };
const $ = (id) => document.getElementById(id);
const state = { images: {}, modality: "flair", seg: null, result: null, files: {}, timer: null };
let nv = null;

function setStatus(text, kind = "idle", busy = false) {
  $("status-text").textContent = text;
  $("spinner").hidden = !busy;
  document.body.dataset.state = kind;
}

async function api(path, options = {}) {
  const r = await fetch(path, options);
  const json = (r.headers.get("content-type") || "").includes("json") ? await r.json() : null;
  if (!r.ok) {
    const lines = json && json.problems && json.problems.length
      ? json.problems.map((p) => `${p.field}: ${p.problem}`) : [json && json.error ? json.error : `${r.status} ${r.statusText}`];
    throw new Error(lines.join("\n"));
  }
  return json;
}

function labelColormap(legend) {
  const cm = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [""] };
  for (const e of legend) {
    cm.R.push(e.rgb[0]); cm.G.push(e.rgb[1]); cm.B.push(e.rgb[2]); cm.A.push(255);
    cm.I.push(e.label); cm.labels.push(e.name);
  }
  return cm;
}

function overlayOpacity() {
  return $("overlay").checked ? parseFloat($("opacity").value) : 0;
}

function goToCentre() {
  if (!state.result || !nv.volumes.length) return;
  nv.scene.crosshairPos = nv.mm2frac(state.result.centre_mm);
  nv.drawScene();
  nv.createOnLocationChange();
}

async function loadView(centre = false) {
  const img = state.images[state.modality];
  if (!img) return;
  const keep = nv.volumes.length && !centre ? nv.scene.crosshairPos.slice() : null;
  document.body.dataset.viewer = "loading";
  const volumes = [{ url: img.url, name: img.name }];
  if (state.seg) volumes.push({ url: state.seg, name: "segmentation.nii.gz", opacity: overlayOpacity() });
  await nv.loadVolumes(volumes);
  if (state.seg) {
    nv.volumes[1].setColormapLabel(labelColormap(state.result.legend));
    nv.setOpacity(1, overlayOpacity());
    nv.updateGLVolume();
  }
  if (keep) { nv.scene.crosshairPos = keep; nv.drawScene(); }
  if (centre) goToCentre();
  document.body.dataset.viewer = state.seg ? "segmentation" : "image";
}

function fillModalities() {
  const select = $("modality");
  const present = MODS.filter((m) => state.images[m]);
  select.replaceChildren(...present.map((m) => new Option(MOD_NAMES[m], m)));
  if (!state.images[state.modality]) state.modality = present.includes("flair") ? "flair" : present[0];
  select.value = state.modality;
}

function setSource(images) {
  state.images = images;
  state.seg = null;
  state.result = null;
  $("volumes").hidden = true;
  $("download").hidden = true;
  fillModalities();
  return loadView(false);
}

function showResult(job) {
  state.result = job.result;
  state.seg = job.download;
  const body = $("volumes").tBodies[0];
  const rows = job.result.legend.map((e) => {
    const tr = document.createElement("tr");
    const sw = `<span class="swatch" style="background: rgb(${e.rgb.join(",")})"></span>`;
    tr.innerHTML = `<td>${sw}${e.name}</td><td>${e.label}</td><td>${job.result.volumes_ml[e.name].toFixed(2)}</td>`;
    return tr;
  });
  const wt = document.createElement("tr");
  wt.innerHTML = `<td>WT (whole tumour)</td><td></td><td>${job.result.volumes_ml.WT.toFixed(2)}</td>`;
  body.replaceChildren(...rows, wt);
  $("volumes").hidden = false;
  const link = $("download");
  link.href = job.download;
  link.download = job.download_name;
  link.hidden = false;
  return loadView(true);
}

async function poll(id) {
  for (;;) {
    const job = await api(`/api/jobs/${id}`);
    if (job.state === "queued") {
      setStatus(`Queued: ${job.ahead} segmentation(s) ahead, ${job.elapsed_s.toFixed(0)} s`, "running", true);
    } else if (job.state === "running") {
      setStatus(`Segmenting\u2026 ${job.running_s.toFixed(0)} s`, "running", true);
    } else if (job.state === "error") {
      throw new Error(job.error);
    } else {
      await showResult(job);
      const r = job.result;
      setStatus(`Done in ${r.seconds.toFixed(1)} s (labels ${r.labels.join(", ")}).`, "done");
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
}

async function segment(kind) {
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  try {
    let job;
    if (kind === "case") {
      const id = $("case-select").value;
      setStatus("Starting\u2026", "running", true);
      job = await api(`/api/jobs?case=${encodeURIComponent(id)}`, { method: "POST" });
    } else {
      const form = new FormData();
      for (const m of MODS) if (state.files[m]) form.append(m, state.files[m], state.files[m].name);
      setStatus("Uploading\u2026", "running", true);
      job = await api(`/api/jobs?labels=${$("labels").value}`, { method: "POST", body: form });
    }
    await poll(job.id);
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    for (const b of document.querySelectorAll("button")) b.disabled = false;
  }
}

function modalityOf(name) {
  const stem = name.toLowerCase().replace(/\.nii(\.gz)?$/, "");
  const suffix = stem.split(/[_-]/).pop();
  return SUFFIX[suffix] || null;
}

function previewUploads() {
  const images = {};
  for (const m of MODS) {
    const f = state.files[m];
    if (f) images[m] = { url: URL.createObjectURL(f), name: f.name };
  }
  setStatus(`${Object.keys(images).length} of 4 files chosen.`, "idle");
  return setSource(images).catch((err) => setStatus(`Cannot show ${err.message}`, "error"));
}

function wireUploads() {
  for (const m of MODS) {
    $(`file-${m}`).addEventListener("change", (ev) => {
      state.files[m] = ev.target.files[0];
      previewUploads();
    });
  }
  $("pick-all").addEventListener("change", (ev) => {
    for (const f of ev.target.files) {
      const m = modalityOf(f.name);
      if (!m) continue;
      state.files[m] = f;
      const dt = new DataTransfer();
      dt.items.add(f);
      $(`file-${m}`).files = dt.files;
    }
    previewUploads();
  });
}

function wireView() {
  $("modality").addEventListener("change", (ev) => { state.modality = ev.target.value; loadView(false); });
  $("overlay").addEventListener("change", () => { if (state.seg) nv.setOpacity(1, overlayOpacity()); });
  $("opacity").addEventListener("input", () => { if (state.seg) nv.setOpacity(1, overlayOpacity()); });
  $("layout").addEventListener("change", (ev) => nv.setSliceType(parseInt(ev.target.value, 10)));
  $("centre").addEventListener("click", goToCentre);
  $("run-upload").addEventListener("click", () => segment("upload"));
  $("run-case").addEventListener("click", () => segment("case"));
}

async function loadCases() {
  const { cases } = await api("/api/cases");
  if (!cases.length) return;
  state.cases = Object.fromEntries(cases.map((c) => [c.id, c]));
  $("case-select").replaceChildren(...cases.map((c) => new Option(c.id, c.id)));
  $("case-select").addEventListener("change", (ev) => setSource(state.cases[ev.target.value].images));
  $("listed").hidden = false;
  await setSource(cases[0].images);
}

function showLocation(data) {
  const v = data.values || [];
  if (!v.length) return;
  const mm = Array.from(data.mm).slice(0, 3).map((x) => x.toFixed(1)).join(", ");
  let text = `voxel ${Array.from(v[0].vox).join(", ")}  (${mm} mm)  ${MOD_NAMES[state.modality]} ${v[0].value}`;
  if (v.length > 1 && state.result) {
    const hit = state.result.legend.find((e) => e.label === Math.round(v[1].value));
    text += `  label ${Math.round(v[1].value)}${hit ? ` ${hit.name}` : ""}`;
  }
  $("location").textContent = text;
}

async function init() {
  nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1], show3Dcrosshair: false, crosshairColor: [0.25, 0.6, 1, 1],
    isColorbar: false, logLevel: "error", multiplanarShowRender: niivue.SHOW_RENDER.NEVER,
  });
  await nv.attachToCanvas($("gl"));
  nv.setSliceType(nv.sliceTypeMultiplanar);
  nv.onLocationChange = showLocation;
  window.bratsViewer = { nv, state };
  wireUploads();
  wireView();
  try {
    const h = await api("/api/health");
    const q = h.queue;
    $("model").textContent = `${h.model.checkpoint} (${h.model.architecture}, ${h.model.device}); `
      + `queue: ${q.running} running, ${q.waiting} waiting; uploads up to ${h.limits.max_upload_mb} MB`;
    await loadCases();
    setStatus("Pick a case or upload one.", "idle");
  } catch (err) {
    setStatus(err.message, "error");
  }
}

window.addEventListener("DOMContentLoaded", init);
