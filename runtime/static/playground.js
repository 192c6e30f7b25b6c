// onnxfn playground: pick a model, send an image or a text, see the top classes and the explanation.
// No dependencies, no build step. The API key lives in a variable of this closure only: never in
// localStorage, sessionStorage or a cookie, and it is sent only to this page's own server (relative URLs).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif"];
  const state = { key: "", models: [], model: null, file: null, previewUrl: null, explanation: null, seq: 0 };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // -- talking to the server -------------------------------------------------------------------------
  function url(path) {
    return new URL(path, document.baseURI).toString(); // relative: works under an API Gateway stage
  }

  function describe(status, detail) {
    if (status === 401) {
      return state.key
        ? "Wrong API key: the server refused it. Check the key and press \u201cUse key\u201d again. (" + detail + ")"
        : "This server needs an API key: type it above and press \u201cUse key\u201d. (" + detail + ")";
    }
    if (status === 413) return "Too large for this server: " + detail;
    if (status === 415) return "Not something this model takes: " + detail;
    if (status === 400) return "The server could not use this input: " + detail;
    if (status === 404) return "Not found: " + detail;
    if (status === 429 || status === 503) return "The server is busy or not ready, try again: " + detail;
    return "The server answered " + status + ": " + detail;
  }

  async function call(path, options) {
    const headers = new Headers((options && options.headers) || {});
    if (state.key) headers.set("x-api-key", state.key);
    let response;
    try {
      response = await fetch(url(path), Object.assign({}, options, { headers, credentials: "omit", cache: "no-store" }));
    } catch (err) {
      throw new ApiError(0, "Cannot reach the server (" + err.message + "): is it running?");
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const detail = data && typeof data.error === "string" ? data.error : text.slice(0, 300) || "no details";
      throw new ApiError(response.status, describe(response.status, detail));
    }
    return data;
  }

  // -- messages ----------------------------------------------------------------------------------------
  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    $("status").textContent = "";
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function status(message) {
    $("status").textContent = message;
  }

  // -- models ------------------------------------------------------------------------------------------
  function kind(model) {
    if (!model) return null;
    if (model.task === "image-classification") return "image";
    if (model.task === "text-classification") return "text";
    return "tensor";
  }

  async function loadModels() {
    const select = $("model");
    select.disabled = true;
    try {
      const data = await call("v1/models");
      state.models = (data && data.models) || [];
      select.textContent = "";
      for (const m of state.models) {
        const option = document.createElement("option");
        option.value = m.name;
        option.textContent = m.name + " (" + m.task + ", v" + m.version + ")";
        select.appendChild(option);
      }
      if (!state.models.length) throw new ApiError(503, "The server has no models loaded.");
      select.value = data.default && state.models.some((m) => m.name === data.default) ? data.default : state.models[0].name;
      select.disabled = false;
      clearError();
      await chooseModel(select.value);
    } catch (err) {
      select.textContent = "";
      const option = document.createElement("option");
      option.textContent = "no models (see the message)";
      select.appendChild(option);
      state.model = null;
      updateInputs();
      showError(err.message);
    }
  }

  async function chooseModel(name) {
    state.model = state.models.find((m) => m.name === name) || null;
    state.explanation = null;
    resetResult();
    updateInputs();
    const info = $("model-info");
    info.textContent = "";
    if (!state.model) return;
    try {
      const meta = await call("v2/models/" + encodeURIComponent(name));
      const input = (meta.inputs || [])[0];
      const params = meta.parameters || {};
      const quant = params.quantization && params.quantization !== "none" ? params.quantization.mode || "quantized" : "float";
      const parts = [params.task || state.model.task];
      if (input) parts.push("input " + input.name + ": " + input.datatype + " [" + input.shape.join(", ") + "]");
      parts.push("version " + (meta.versions || ["?"])[0], quant);
      if (Array.isArray(params.labels)) parts.push(params.labels.length + " classes");
      info.textContent = parts.join(" · ");
    } catch (err) {
      showError(err.message);
    }
  }

  function updateInputs() {
    const k = kind(state.model);
    $("image-input").hidden = k === "text";
    $("text-input").hidden = k !== "text";
    const ready = k === "image" ? Boolean(state.file) : k === "text" ? $("text").value.trim().length > 0 : false;
    $("predict").disabled = !ready;
    if (k === "tensor") {
      status("This model takes raw tensors: use the V2 infer API (see the API docs), not this page.");
    }
  }

  // -- input -------------------------------------------------------------------------------------------
  function takeFile(file) {
    if (!file) return;
    clearError();
    if (!IMAGE_TYPES.includes(file.type)) {
      state.file = null;
      $("file-name").textContent = "";
      updateInputs();
      showError("\u201c" + file.name + "\u201d is not an image: choose a PNG, JPEG, WebP, BMP or GIF file.");
      return;
    }
    state.file = file;
    state.explanation = null;
    $("file-name").textContent = "Chosen: " + file.name + " (" + Math.ceil(file.size / 1024) + " KB)";
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    resetResult();
    $("preview").src = state.previewUrl;
    $("figure").hidden = false;
    updateInputs();
    predict();
  }

  function resetResult() {
    $("topk").textContent = "";
    $("overlay").hidden = true;
    $("overlay").removeAttribute("src");
    $("preview").hidden = false;
    $("caption").textContent = "";
    $("words").hidden = true;
    $("tokens").textContent = "";
    if (!state.file || kind(state.model) !== "image") $("figure").hidden = true;
  }

  function body() {
    if (kind(state.model) === "image") {
      return { body: state.file, headers: { "content-type": "application/octet-stream" } };
    }
    return {
      body: JSON.stringify({ instances: [$("text").value] }),
      headers: { "content-type": "application/json" },
    };
  }

  // -- predict and explain -----------------------------------------------------------------------------
  async function predict() {
    if (!state.model || $("predict").disabled) return;
    const seq = ++state.seq;
    clearError();
    state.explanation = null;
    $("topk").textContent = "";
    $("overlay").hidden = true;
    $("preview").hidden = false;
    $("words").hidden = true;
    status("Predicting with " + state.model.name + "…");
    const path = "v1/models/" + encodeURIComponent(state.model.name) + ":predict?top_k=5";
    try {
      const data = await call(path, Object.assign({ method: "POST" }, body()));
      if (seq !== state.seq) return;
      renderTopK(data.predictions[0]);
      status("");
      if ($("explain").checked) await explain(seq);
    } catch (err) {
      if (seq === state.seq) showError(err.message);
    }
  }

  function renderTopK(rows) {
    const list = $("topk");
    list.textContent = "";
    for (const row of rows) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = row.label;
      const track = document.createElement("span");
      track.className = "track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = Math.max(0, Math.min(100, row.score * 100)).toFixed(1) + "%";
      track.appendChild(fill);
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = (row.score * 100).toFixed(1) + "%";
      item.append(name, track, score);
      list.appendChild(item);
    }
  }

  async function explain(seq) {
    status("Explaining (a few model runs)…");
    const path = "v1/models/" + encodeURIComponent(state.model.name) + ":explain";
    try {
      const data = await call(path, Object.assign({ method: "POST" }, body()));
      if (seq !== state.seq) return;
      state.explanation = data.explanations[0];
      showExplanation();
      status("");
    } catch (err) {
      if (seq === state.seq) showError(err.message);
    }
  }

  function showExplanation() {
    const e = state.explanation;
    const on = $("explain").checked && e;
    if (e && e.overlay) {
      $("overlay").src = "data:image/png;base64," + e.overlay;
      $("overlay").hidden = !on;
      $("preview").hidden = Boolean(on);
      $("caption").textContent = on
        ? "Evidence for \u201c" + e.label + "\u201d (" + e.method + ", " + e.masks + " model runs" + (e.complete ? "" : ", cut short by the time budget") + ")"
        : "";
    }
    if (e && e.tokens) {
      const out = $("tokens");
      out.textContent = "";
      const peak = e.scores.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-9);
      e.tokens.forEach((token, i) => {
        const span = document.createElement("span");
        const s = e.scores[i] / peak;
        span.textContent = token;
        span.title = (e.scores[i] >= 0 ? "+" : "") + e.scores[i].toFixed(4);
        span.style.backgroundColor = s >= 0 ? "rgba(46, 160, 67, " + (0.6 * s).toFixed(3) + ")" : "rgba(218, 54, 51, " + (-0.6 * s).toFixed(3) + ")";
        out.append(span, " ");
      });
      $("words").hidden = !on;
    }
  }

  // -- wiring ------------------------------------------------------------------------------------------
  function init() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("api-key").value.trim();
      loadModels();
    });
    $("model").addEventListener("change", (event) => chooseModel(event.target.value));
    $("file").addEventListener("change", (event) => takeFile(event.target.files[0]));
    $("text").addEventListener("input", updateInputs);
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) predict();
    });
    $("predict").addEventListener("click", predict);
    $("explain").addEventListener("change", () => {
      if (state.explanation) showExplanation();
      else if ($("explain").checked && !$("predict").disabled && $("topk").children.length) explain(state.seq);
      else showExplanation();
    });
    const drop = $("drop");
    ["dragenter", "dragover"].forEach((type) =>
      drop.addEventListener(type, (event) => {
        event.preventDefault();
        drop.classList.add("over");
      })
    );
    ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      takeFile(event.dataTransfer.files[0]);
    });
    if (document.body.dataset.auth === "key") {
      // Keys are configured: ask for one before the first API call (which would only be refused).
      $("model").textContent = "";
      status("This server needs an API key: type it above and press \u201cUse key\u201d.");
      $("api-key").focus();
    } else {
      loadModels();
    }
  }

  init();
})();
