// The page: loads model.json and model.onnx (asking for the API key if the server wants
// one), then classifies each photo or file in the browser with onnxruntime-web.
"use strict";
(function () {
  const KEY_STORE = "imgcls-api-key";  // the same name as the service's own page at /
  const $ = (id) => document.getElementById(id);
  const app = { ready: false, classified: 0, last: null };
  window.imgclsApp = app;  // for tests and the curious: the last result, probabilities included

  // One thread, no proxy worker: threads need cross-origin isolation (SharedArrayBuffer),
  // which a plain static host does not give. The runtime's files sit in ort/ beside us.
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;

  function setStatus(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
  }

  function headers() {
    const key = sessionStorage.getItem(KEY_STORE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  // The key form resolves this once the user submits a key.
  function askForKey() {
    $("keyform").style.display = "block";
    $("key").focus();
    return new Promise((resolve) => {
      $("keyform").onsubmit = (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY_STORE, $("key").value.trim());
        $("keyform").style.display = "none";
        resolve();
      };
    });
  }

  // GET a file of the app; on 401 (served by `imgcls serve --api-key`), ask and retry.
  async function fetchFile(name) {
    for (;;) {
      const response = await fetch(name, { headers: headers() });
      if (response.status === 401) {
        setStatus("This server needs its API key to send the model.", true);
        await askForKey();
        setStatus("loading the model…");
        continue;
      }
      if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
      return response;
    }
  }

  async function loadModel() {
    const info = await (await fetchFile("model.json")).json();
    const bytes = await (await fetchFile("model.onnx")).arrayBuffer();
    app.session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    app.info = info;
    const { channels, height, width } = info.input;
    $("model").textContent = `${info.name}: ${info.class_names.length} classes, ` +
      `${width}x${height} ${channels === 1 ? "gray" : "RGB"}, ${info.precision || "fp32"}, ` +
      info.runtime;
    for (const input of [$("camera"), $("file")]) input.disabled = false;
    for (const label of document.querySelectorAll("label.button")) label.removeAttribute("aria-disabled");
    app.ready = true;
    setStatus("Ready. Take a photo or choose an image.");
  }

  // The image at natural size, upright (EXIF), its colours as stored: no colour-profile
  // conversion, since PIL ignores embedded profiles too.
  async function decode(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image",
        premultiplyAlpha: "none", colorSpaceConversion: "none" });
    } catch (error) {
      throw new Error(`"${file.name}" could not be read as an image (${error.message}). ` +
                      "Choose a photo or a JPEG, PNG, WebP or GIF file.");
    }
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    return context.getImageData(0, 0, canvas.width, canvas.height);
  }

  async function classify(file) {
    const started = performance.now();
    const image = await decode(file);
    const { channels, height } = app.info.input;
    const pixels = ImgclsPreprocess.toModelPixels(image.data, image.width, image.height,
                                                  channels, height, app.info.resize_pass_order);
    const prepared = performance.now();
    const input = new ort.Tensor("float32", Float32Array.from(pixels), [1, channels, height, height]);
    const outputs = await app.session.run({ [app.info.input_name]: input });
    const probabilities = Array.from(outputs[app.info.output_name].data);
    // "None of my classes": the model file's rule, as prediction.py applies it in Python.
    const named = app.info.familiarity_name;
    const familiarity = named && outputs[named] ? outputs[named].data[0] : null;
    const threshold = app.info.threshold;
    const unknown = familiarity !== null && threshold !== null && threshold !== undefined &&
      familiarity < threshold;
    const finished = performance.now();
    return { probabilities, familiarity, threshold, unknown, pixels: Array.from(pixels),
             width: image.width, height: image.height,
             totalMs: finished - started, modelMs: finished - prepared };
  }

  function ranked(probabilities, k) {
    return probabilities.map((score, index) => ({ label: app.info.class_names[index], score }))
      .sort((a, b) => b.score - a.score).slice(0, k);
  }

  function show(result) {
    const top = ranked(result.probabilities, app.info.topk);
    $("label").textContent = result.unknown ? "unknown" : top[0].label;
    $("unknown").hidden = !result.unknown;
    if (result.unknown) {
      $("unknown").textContent = "None of this model's classes: the image looks unlike its " +
        `training images (familiarity ${result.familiarity.toFixed(2)}, below ` +
        `${result.threshold.toFixed(2)}). Its closest guesses:`;
    }
    $("bars").replaceChildren(...top.map(({ label, score }) => {
      const bar = document.createElement("div");
      bar.className = "bar";
      const name = document.createElement("div");
      name.className = "name";
      const labelText = document.createElement("span");
      labelText.textContent = label;
      const scoreText = document.createElement("span");
      scoreText.textContent = `${(score * 100).toFixed(1)}%`;
      name.append(labelText, scoreText);
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(score * 100).toFixed(1)}%`;
      track.append(fill);
      bar.append(name, track);
      return bar;
    }));
    $("latency").textContent = `${result.totalMs.toFixed(1)} ms on this device ` +
      `(model ${result.modelMs.toFixed(1)} ms), ${result.width}x${result.height} image`;
    $("result").hidden = false;
    setStatus("");
    app.last = { ...result, label: $("label").textContent, topk: top };
  }

  async function onFile(event) {
    const file = event.target.files[0];
    event.target.value = "";  // so choosing the same file again fires `change` again
    if (!file || !app.ready) return;
    const preview = $("preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.style.display = "none";
    $("result").hidden = true;
    setStatus("classifying…");
    try {
      show(await classify(file));
      preview.src = URL.createObjectURL(file);
      preview.style.display = "block";
    } catch (error) {
      app.last = { error: error.message };
      setStatus(error.message, true);
    }
    app.classified += 1;
  }

  async function registerServiceWorker() {
    if (!("serviceWorker" in navigator)) {
      $("offline").textContent = "Offline use needs HTTPS (or localhost) and a current browser.";
      return;
    }
    try {
      await navigator.serviceWorker.register("sw.js");
      await navigator.serviceWorker.ready;
      await controlled();
      await modelLoaded;
      // Through the worker now: it caches what its install could not fetch without the
      // API key (a cache hit otherwise).
      for (const name of ["model.json", "model.onnx"]) await fetch(name, { headers: headers() });
      $("offline").textContent = "Saved on this device: works offline.";
    } catch (error) {
      $("offline").textContent = `Not available offline (${error.message}).`;
    }
  }

  function controlled() {
    if (navigator.serviceWorker.controller) return Promise.resolve();
    return new Promise((resolve) =>
      navigator.serviceWorker.addEventListener("controllerchange", resolve, { once: true }));
  }

  $("camera").addEventListener("change", onFile);
  $("file").addEventListener("change", onFile);
  const modelLoaded = loadModel();
  modelLoaded.catch((error) => setStatus(`The model could not be loaded: ${error.message}`, true));
  registerServiceWorker();
})();
