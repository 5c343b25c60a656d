// TSCT slice viewer (Streamlit custom component v2, plain JavaScript, no build step).
//
// Scrolling, windowing, zoom, panning, cine and the ruler happen here in the browser; slice images
// come from the server's image route with the reading's ticket (the server refuses any layer the
// treatment does not show). Grey slices come as raw int16 values (format "raw") and are windowed
// here through a lookup table, so a window change redraws without asking the server; with format
// png/jpeg the server windows them. With raw slices the aided reading's z-map overlay rides in the
// CT's response (palette indices and the palette, coloured here), so an aided slice is one request;
// otherwise it is a paletted PNG of its own. Slices are kept in a
// cache (bounded in bytes) and the next slices in the scroll direction are prefetched at low priority. The HU under the cursor comes from the server's volume (the /hu route, same
// ticket), never from the grey level; its answer also places the crosshair on the panel beside.
// Geometry: the image is placed with the formula of reading_app.workstation.geometry.ViewTransform;
// a mark is sent back as a screen position plus the view, and the server converts it to voxels and
// mm. Marks are drawn from the (slice, u, v) positions the server computed.
//
// Mouse (PACS conventions): the active tool's left-drag (W/L by default); right-drag or
// Ctrl+left-drag always windows; middle-drag or Shift+left-drag always pans; wheel = slices. A mark
// is a deliberate act: a click with the Mark tool, or a double click with any other tool but the ruler.

const CACHE_BYTES = 384 * 2 ** 20;  // raw slices count their bytes (512 KiB at 512 x 512)
const IMAGE_BYTES = 256 * 1024;  // what a cached PNG/JPEG image counts as
const PAD = 6;
const PREFETCH_AHEAD = 10;
const PREFETCH_BEHIND = 3;
const PREFETCH_AFTER_JUMP_MS = 250;
const DOUBLE_CLICK_MS = 500;
const DOUBLE_CLICK_PX = 6;
const PLANES = ["axial", "coronal", "sagittal"];
const TOOLS = [["wl", "W/L", "w", "left-drag sets window/level"], ["pan", "Pan", "h", "left-drag pans"],
  ["ruler", "Ruler", "d", "two clicks measure a distance (mm)"], ["mark", "Mark", "m", "a click places a mark"]];
const CINE_FPS = [1, 30];

function clamp(v, lo, hi) { return Math.max(lo, Math.min(hi, v)); }

function transformOf(vp, g, zoom, center) {
  const f = Math.min(vp.W / (g.nu * g.du), vp.H / (g.nv * g.dv));
  const pu = g.du * f * zoom, pv = g.dv * f * zoom;
  const cu = center ? center[0] : g.nu / 2, cv = center ? center[1] : g.nv / 2;
  return {
    f, pu, pv, cu, cv, pxPerMm: f * zoom,
    x: (u) => vp.W / 2 + (u - cu) * pu,
    y: (v) => vp.H / 2 + (v - cv) * pv,
    u: (x) => cu + (x - vp.W / 2) / pu,
    v: (y) => cv + (y - vp.H / 2) / pv,
  };
}

function nearestIndex(positions, value) {
  let best = 0, bestD = Infinity;
  for (let i = 0; i < positions.length; i++) {
    const d = Math.abs(positions[i] - value);
    if (d < bestD) { bestD = d; best = i; }
  }
  return best;
}

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

class Viewer {
  constructor(root, data, trigger) {
    this.root = root;
    this.data = data;
    this.trigger = trigger;
    this.cache = new Map();
    this.cacheBytes = 0;
    this.offscreen = { main: null, side: null, overlay: null };
    this.luts = new Map();
    this.req = 0;
    this.drawnReq = { main: 0, side: 0 };
    this.lastImages = { main: null, side: null };
    this.errors = new Set();
    const cur = data.volumes.current;
    const presets = data.presets;
    const S = {
      plane: "axial",
      slice: {},
      center: { axial: null, coronal: null, sagittal: null },
      sideCenter: { axial: null, coronal: null, sagittal: null },
      priorOffset: { axial: 0, coronal: 0, sagittal: 0 },
      preset: presets[0].name, wl: presets[0].level, ww: presets[0].width,
      zoom: 1, overlay: true, opacity: 0.85, side: "none", dir: 1,
      lastActivity: 0, lastBeat: 0, jumpNonce: null, localPending: null, lastClick: null,
      tool: "wl", ruler: null, cine: false, fps: 8, full: false,
    };
    for (const p of PLANES) S.slice[p] = Math.floor(cur[p].n / 2);
    const v = data.view;
    if (v) {
      if (PLANES.includes(v.plane)) S.plane = v.plane;
      if (v.slice) for (const p of PLANES) if (Number.isInteger(v.slice[p])) S.slice[p] = clamp(v.slice[p], 0, cur[p].n - 1);
      for (const k of ["preset", "wl", "ww", "zoom", "overlay", "opacity", "side", "tool", "fps"]) if (v[k] !== undefined && v[k] !== null) S[k] = v[k];
      if (!TOOLS.some((t) => t[0] === S.tool) || (S.tool === "mark" && !data.canMark)) S.tool = "wl";
      if (S.side !== "none" && !data.layers[S.side]) S.side = "none";
    }
    this.S = S;
    root.dataset.instance = data.instance;
    this.build();
    this.localizer = new Localizer(this);  // localizer.js
    this.bind();
    this.layout();
    this.render();
    this.heartbeat = setInterval(() => this.beat(), Math.max(2, data.heartbeatS) * 1000);
  }

  // ------------------------------------------------------------------ DOM
  build() {
    const d = this.data, S = this.S;
    const planeButtons = PLANES.map((p) => `<button type="button" class="plane" data-plane="${p}" title="${p} (${p[0].toUpperCase()})">${p[0].toUpperCase() + p.slice(1)}</button>`).join("");
    const presetButtons = d.presets.map((p) => `<button type="button" class="preset" data-preset="${esc(p.name)}" title="W ${p.width} / L ${p.level} (${p.key.toUpperCase()})">${esc(p.label)}</button>`).join("");
    const hasZ = !!d.layers.zmap;
    const sides = Object.entries(d.layers).filter(([, L]) => L.role === "side");
    const sideOptions = [`<option value="none">none</option>`].concat(sides.map(([name, L]) => `<option value="${esc(name)}">${esc(L.label)}</option>`)).join("");
    const lim = d.windowLimits;
    const toolButtons = TOOLS.filter(([name]) => name !== "mark" || d.canMark)
      .map(([name, label, key, what]) => `<button type="button" class="tool" data-tool="${name}" title="${what} (${key.toUpperCase()})">${label}</button>`).join("");
    // The image takes the window: the localizer and the controls stacked in a narrow rail beside
    // it, the slice slider and the readout in one line each below it.
    this.root.innerHTML = `
      <div class="wl-message" role="alert"></div>
      <div class="body">
        <div class="panels">
          <div class="vp main" data-role="main"><canvas class="img"></canvas><svg class="marks" xmlns="http://www.w3.org/2000/svg"></svg><div class="info"></div><div class="hu-info"></div></div>
          <div class="vp side" data-role="side"><canvas class="img"></canvas><svg class="cross" xmlns="http://www.w3.org/2000/svg"></svg><div class="info"></div><div class="hu-info"></div></div>
        </div>
        <div class="rail">
          ${Localizer.html()}
          <div class="toolbar">
            <span class="group tools" role="group" aria-label="tool">${toolButtons}</span>
            <span class="group">${planeButtons}</span>
            <span class="group">${presetButtons}</span>
            <span class="group"><label>W <input class="ww" type="number" step="10" min="${lim.widthMin}" max="${lim.widthMax}" aria-label="window width (HU)"></label>
              <label>L <input class="wl" type="number" step="10" min="${lim.levelMin}" max="${lim.levelMax}" aria-label="window level (HU)"></label></span>
            ${hasZ ? `<span class="group overlay-group"><label><input class="overlay-toggle" type="checkbox"> z-map</label>
              <input class="opacity" type="range" min="0" max="1" step="0.05" title="overlay opacity"></span>` : ""}
            <span class="group"><button type="button" class="zoom-out" title="zoom out (−)">−</button><button type="button" class="zoom-in" title="zoom in (+)">+</button><button type="button" class="zoom-reset" title="reset zoom, pan, window (R)">Reset</button></span>
            <span class="group"><button type="button" class="cine" title="play / pause the slices (Space)">▶ Cine</button>
              <label>fps <input class="fps" type="number" min="${CINE_FPS[0]}" max="${CINE_FPS[1]}" step="1" aria-label="cine frames per second"></label></span>
            ${sides.length ? `<span class="group"><label>beside: <select class="side">${sideOptions}</select></label></span>` : ""}
            <span class="group"><button type="button" class="full" title="the viewer fills the window (F; Esc leaves)">Fill</button></span>
          </div>
        </div>
      </div>
      <div class="slider-row"><input class="slice" type="range" min="0" step="1" aria-label="slice"><span class="slice-label"></span></div>
      <div class="readout-row"><div class="readout" aria-live="off"><span class="here">Move the cursor over the image for its HU.</span> <span class="linked"></span></div>
        <div class="help" title="${esc(d.mouseHelp || "")}">${esc(d.mouseHelp || "")}</div></div>
      <div class="status" role="status"></div>`;
    const q = (sel) => this.root.querySelector(sel);
    this.el = {
      main: q(".vp.main"), side: q(".vp.side"),
      mainCanvas: q(".vp.main canvas"), sideCanvas: q(".vp.side canvas"),
      svg: q(".vp.main svg"), mainInfo: q(".vp.main .info"), sideInfo: q(".vp.side .info"),
      slider: q("input.slice"), sliceLabel: q(".slice-label"), status: q(".status"),
      ww: q("input.ww"), wl: q("input.wl"), overlay: q("input.overlay-toggle"), opacity: q("input.opacity"), sideSelect: q("select.side"),
      toolbar: q(".toolbar"), body: q(".body"), rail: q(".rail"), wlMessage: q(".wl-message"), cine: q("button.cine"), fps: q("input.fps"), full: q("button.full"),
      readout: q(".readout"), readHere: q(".readout .here"), readLinked: q(".readout .linked"),
      crossSvg: q(".vp.side svg.cross"), mainHu: q(".vp.main .hu-info"), sideHu: q(".vp.side .hu-info"),
    };
  }

  bind() {
    const el = this.el, S = this.S;
    this.root.querySelectorAll("button.plane").forEach((b) => b.addEventListener("click", () => this.setPlane(b.dataset.plane)));
    this.root.querySelectorAll("button.preset").forEach((b) => b.addEventListener("click", () => this.setPreset(b.dataset.preset)));
    el.ww.addEventListener("change", () => this.typedWindow());
    el.wl.addEventListener("change", () => this.typedWindow());
    this.root.querySelectorAll("button.tool").forEach((b) => b.addEventListener("click", () => this.setTool(b.dataset.tool)));
    // Toolbar buttons never take the keyboard focus from the viewer (Space is cine, not "press the button").
    this.root.querySelectorAll(".toolbar button").forEach((b) => b.addEventListener("mousedown", (e) => e.preventDefault()));
    el.cine.addEventListener("click", () => this.toggleCine());
    el.fps.addEventListener("change", () => this.typedFps());
    el.full.addEventListener("click", () => this.toggleFull());
    this.root.querySelector(".zoom-in").addEventListener("click", () => this.setZoom(S.zoom * 1.25));
    this.root.querySelector(".zoom-out").addEventListener("click", () => this.setZoom(S.zoom / 1.25));
    this.root.querySelector(".zoom-reset").addEventListener("click", () => this.reset());
    if (el.overlay) el.overlay.addEventListener("change", () => { S.overlay = el.overlay.checked; this.activity(); this.render(); });
    if (el.opacity) el.opacity.addEventListener("input", () => { S.opacity = Number(el.opacity.value); this.activity(); this.redraw("main"); });
    if (el.sideSelect) el.sideSelect.addEventListener("change", () => { S.side = el.sideSelect.value; this.activity(); this.layout(); this.render(); });
    el.slider.addEventListener("input", () => { this.stopCine(); this.go(Number(el.slider.value)); });

    for (const role of ["main", "side"]) {
      const vp = el[role];
      vp.addEventListener("wheel", (e) => this.onWheel(e, role), { passive: false });
      vp.addEventListener("pointerdown", (e) => this.onPointerDown(e, role));
      vp.addEventListener("pointermove", (e) => this.onPointerMove(e, role));
      vp.addEventListener("pointerup", (e) => this.onPointerUp(e));
      vp.addEventListener("pointerleave", () => this.leave(role));
      vp.addEventListener("dblclick", (e) => this.onDoubleClick(e, role));
      vp.addEventListener("contextmenu", (e) => e.preventDefault());
    }
    this.onKey = (e) => this.handleKey(e);
    document.addEventListener("keydown", this.onKey);
    this.onResize = () => { this.layout(); this.redraw("main"); this.redraw("side"); this.drawMarks(); };
    this.resizeObserver = new ResizeObserver(this.onResize);
    this.resizeObserver.observe(this.root);
    window.addEventListener("resize", this.onResize);  // the image's height follows the window's
  }

  destroy() {
    document.removeEventListener("keydown", this.onKey);
    clearInterval(this.heartbeat);
    clearTimeout(this.cineTimer);
    window.removeEventListener("resize", this.onResize);
    if (this.resizeObserver) this.resizeObserver.disconnect();
  }

  layout() {
    const S = this.S, el = this.el;
    const showSide = S.side !== "none" && !!this.data.layers[S.side];
    el.side.style.display = showSide ? "block" : "none";
    const width = Math.max(240, (this.root.clientWidth || 640) - 2 * PAD);
    const panels = showSide ? 2 : 1, gap = 8;
    const railW = Localizer.railWidth(width);
    el.rail.style.width = railW + "px";
    const W = Math.floor((width - railW - gap - gap * (panels - 1)) / panels);
    // The image gets the window's height below the viewer's top less the viewer's own rows
    // (slider, readout, messages: measured), so that the whole viewer is on screen at once.
    const chrome = this.root.offsetHeight - el.body.offsetHeight;
    const H = Math.round(Math.max(260, Math.min(W * 1.25, (window.innerHeight || 900) - this.pageTop() - chrome - PAD)));
    this.vp = { main: { W, H }, side: { W, H } };
    const dpr = window.devicePixelRatio || 1;
    for (const role of ["main", "side"]) {
      const c = el[role + "Canvas"], box = el[role];
      box.style.width = W + "px"; box.style.height = H + "px";
      c.width = Math.round(W * dpr); c.height = Math.round(H * dpr);
      c.style.width = W + "px"; c.style.height = H + "px";
    }
    for (const svg of [el.svg, el.crossSvg]) { svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", `0 0 ${W} ${H}`); }
    this.localizer.layout(Localizer.shown(width) ? railW : 0, H);
    this.root.dataset.layoutFor = String(window.innerWidth);  // the window width this layout was made for (the layout bench waits for it)
  }

  pageTop() {
    // The viewer's top in the page scrolled to its start (0 when it fills the window): its top on
    // screen plus how far every box around it (through the component's shadow root) is scrolled.
    if (this.S.full) return 0;
    let top = this.root.getBoundingClientRect().top;
    for (let n = this.root; n; ) {
      top += n.scrollTop || 0;
      const root = n.getRootNode ? n.getRootNode() : null;
      n = n.parentElement || (root && root !== document && root.host) || null;
    }
    return Math.max(0, top);
  }

  // ------------------------------------------------------------------ images
  rawOverlay() {
    // the z-map overlay is wanted, and rides with the raw CT slice
    const d = this.data;
    return d.format === "raw" && !!(this.S.overlay && d.layers.zmap && d.layers.zmap.available);
  }

  url(layer, plane, index, withOverlay = false) {
    const d = this.data, S = this.S, L = d.layers[layer];
    let u = `${d.api}/image/${encodeURIComponent(d.ticket)}/${layer}/${plane}/${index}`;
    if (layer === "zmap") return u;
    u += `?fmt=${d.format}`;
    if (!L.fixed && d.format !== "raw") u += `&wl=${S.wl}&ww=${S.ww}`;
    if (withOverlay) u += "&overlay=zmap";
    return u;
  }

  forget(u) {
    const e = this.cache.get(u);
    if (!e) return;
    this.cache.delete(u);
    this.cacheBytes -= e.bytes;
  }

  clearCache() {
    for (const e of this.cache.values()) if (!e.ok && !e.err && e.cancel) e.cancel();
    this.cache.clear();
    this.cacheBytes = 0;
  }

  load(u, priority = "high") {
    let e = this.cache.get(u);
    if (e) { this.cache.delete(u); this.cache.set(u, e); return e.promise; }
    const raw = u.includes("fmt=raw");
    e = { img: null, buf: null, ok: false, err: false, bytes: raw ? 0 : IMAGE_BYTES, cancel: null };
    // A failed image is asked for once more after a moment (right after log-in the session cookie
    // may still be on its way; image links work only with it). Prefetches ask at low priority, so
    // the slice on screen never queues behind them.
    const retry = (left, again) => {
      if (left > 0 && this.cache.get(u) === e) return new Promise((r) => setTimeout(r, 700)).then(() => again(left - 1));
      e.err = true;
      if (this.cache.get(u) === e) this.forget(u);
      return e;
    };
    // raw: the slice's values (int16), windowed when drawn
    const fetchRaw = (left) => {
      const ctl = new AbortController();
      e.cancel = () => ctl.abort();
      return fetch(u, { credentials: "same-origin", signal: ctl.signal, priority })
        .then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(String(r.status)))))
        .then((buf) => {
          e.buf = buf; e.ok = true;
          if (this.cache.get(u) === e) { this.cacheBytes += buf.byteLength; e.bytes = buf.byteLength; this.trimCache(); }
          return e;
        }, (err) => (ctl.signal.aborted ? retry(0) : retry(left, fetchRaw)));
    };
    // decode() loads and decodes off the main thread, so drawing it later costs no decoding
    const fetchImage = (left) => {
      const img = new Image();
      e.img = img;
      img.fetchPriority = priority;
      e.cancel = () => { img.src = ""; };
      img.src = u;
      return img.decode().then(() => { e.ok = true; return e; }, () => retry(left, fetchImage));
    };
    e.promise = raw ? fetchRaw(1) : fetchImage(1);
    this.cache.set(u, e);
    this.cacheBytes += e.bytes;
    this.trimCache();
    return e.promise;
  }

  trimCache() {
    // least recently used out, never the newest entry
    while (this.cacheBytes > CACHE_BYTES && this.cache.size > 1) this.forget(this.cache.keys().next().value);
  }

  lut(level, width) {
    // int16 value + 32768 -> opaque grey pixel (RGBA bytes as one little-endian uint32), the
    // server's window_to_uint8: clip((v - (level - width / 2)) * 255 / width, 0, 255), rounded
    const key = `${level}:${width}`;
    let t = this.luts.get(key);
    if (t) return t;
    t = new Uint32Array(65536);
    const lo = level - width / 2, scale = 255 / width;
    for (let i = 0; i < 65536; i++) {
      const g = Math.floor(clamp((i - 32768 - lo) * scale, 0, 255) + 0.5);
      t[i] = 0xff000000 | (g << 16) | (g << 8) | g;
    }
    if (this.luts.size >= 4) this.luts.clear();
    this.luts.set(key, t);
    return t;
  }

  parts(entry, g) {
    // a raw response: the int16 slice, then (overlay=zmap) the overlay's palette indices and 256 RGBA entries
    if (entry.parts && entry.parts.n === g.nu * g.nv) return entry.parts;
    const n = g.nu * g.nv, size = entry.buf.byteLength;
    if (size !== 2 * n && size !== 3 * n + 1024) return null;
    entry.parts = { n, values: new Int16Array(entry.buf, 0, n) };
    if (size > 2 * n) {
      entry.parts.index = new Uint8Array(entry.buf, 2 * n, n);
      entry.parts.palette = new Uint32Array(entry.buf.slice(3 * n));  // RGBA bytes as little-endian uint32
    }
    return entry.parts;
  }

  offscreenFor(name, g) {
    let o = this.offscreen[name];
    if (!o || o.canvas.width !== g.nu || o.canvas.height !== g.nv) {
      const canvas = document.createElement("canvas");
      canvas.width = g.nu; canvas.height = g.nv;
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(g.nu, g.nv);
      o = this.offscreen[name] = { canvas, ctx, img, px: new Uint32Array(img.data.buffer), entry: null, key: "" };
    }
    return o;
  }

  picture(entry, role, layer, g) {
    // what drawImage draws: the decoded image, or the raw slice windowed into this panel's own canvas
    if (!entry.buf) return entry.img;
    const parts = this.parts(entry, g);
    if (!parts) return null;
    const L = this.data.layers[layer], S = this.S;
    const win = L && L.window ? L.window : { level: S.wl, width: S.ww };
    const o = this.offscreenFor(role, g), key = `${win.level}:${win.width}`;
    if (o.entry === entry && o.key === key) return o.canvas;  // already in it
    o.entry = entry; o.key = key;
    const lut = this.lut(win.level, win.width), px = o.px, values = parts.values;
    for (let i = 0; i < px.length; i++) px[i] = lut[values[i] + 32768];
    o.ctx.putImageData(o.img, 0, 0);
    return o.canvas;
  }

  overlayPicture(entry, g) {
    // the overlay that rode with a raw CT slice, coloured with its palette (null: none came)
    const parts = entry && entry.buf ? this.parts(entry, g) : null;
    if (!parts || !parts.index) return null;
    const o = this.offscreenFor("overlay", g);
    if (o.entry === entry) return o.canvas;
    o.entry = entry;
    const px = o.px, index = parts.index, palette = parts.palette;
    for (let i = 0; i < px.length; i++) px[i] = palette[index[i]];
    o.ctx.putImageData(o.img, 0, 0);
    return o.canvas;
  }

  reportError(layer, u) {
    if (this.errors.has(u)) return;
    this.errors.add(u);
    fetch(u, { credentials: "same-origin" }).then((r) => r.json()).then((j) => this.status(j.error || `The ${layer} image could not be loaded.`)).catch(() => this.status(`The ${layer} image could not be loaded.`));
  }

  sideIndex(plane, slice) {
    // the side panel's slice for current slice ``slice`` (default: the one shown)
    const d = this.data, S = this.S, s = slice === undefined ? S.slice[plane] : slice;
    if (S.side === "prior") {
      const pg = d.volumes.prior[plane];
      // through the detector's registration when the server sent it (anatomy), else table position
      const synced = d.priorSync && d.priorSync[plane];
      const base = synced ? synced[s] : nearestIndex(pg.pos, d.volumes.current[plane].pos[s]);
      return clamp(base + S.priorOffset[plane], 0, pg.n - 1);
    }
    return s;
  }

  sideGeometry(plane) {
    return this.S.side === "prior" ? this.data.volumes.prior[plane] : this.data.volumes.current[plane];
  }

  render() {
    const d = this.data, S = this.S, plane = S.plane, s = S.slice[plane];
    const reqId = ++this.req;
    const riding = this.rawOverlay();
    const base = this.url("ct", plane, s, riding);
    const wantOverlay = !!(S.overlay && d.layers.zmap && d.layers.zmap.available);
    const overlayUrl = wantOverlay && !riding ? this.url("zmap", plane, s) : null;
    const tag = `${plane}:${s}:${S.wl}:${S.ww}`;
    const c = this.el.mainCanvas;
    let baseEntry = null, overlayEntry = null;
    // The CT is drawn as soon as it is here; the overlay joins it when it arrives. data-shown marks
    // the complete picture (CT, plus the overlay when it is on).
    const draw = () => {
      if (reqId < this.drawnReq.main || !baseEntry || baseEntry.err) return;
      const g = d.volumes.current[plane];
      const picture = this.picture(baseEntry, "main", "ct", g);
      if (!picture) { this.reportError("CT", base); return; }
      if (riding) overlayEntry = baseEntry;
      this.drawnReq.main = reqId;
      const overlay = riding ? this.overlayPicture(baseEntry, g) : overlayEntry && overlayEntry.ok ? overlayEntry.img : null;
      this.lastImages.main = { base: picture, overlay, plane, volume: "current" };
      this.redraw("main");
      c.dataset.base = tag;
      c.dataset.overlay = overlay ? "1" : "0";
      if (!wantOverlay || overlayEntry) {
        c.dataset.shown = tag;
        // Scrolling: prefetch the next slices at once. After a jump, wait a moment: the reader
        // may jump again, and renders of slices nobody looks at would slow the next picture.
        if (this.S.lastStep === 1) this.prefetch(reqId);
        else setTimeout(() => this.prefetch(reqId), PREFETCH_AFTER_JUMP_MS);
      }
    };
    this.load(base).then((e) => { baseEntry = e; if (e.err) { this.reportError("CT", base); return; } draw(); });
    if (overlayUrl) this.load(overlayUrl).then((e) => { overlayEntry = e; if (e.err) this.reportError("z-map", overlayUrl); draw(); });
    if (S.side !== "none" && d.layers[S.side]) {
      const layer = S.side, si = this.sideIndex(plane);
      const u = this.url(layer, plane, si);
      this.load(u).then((e) => {
        if (reqId <= this.drawnReq.side) return;
        const picture = e.err ? null : this.picture(e, "side", layer, layer === "prior" ? d.volumes.prior[plane] : d.volumes.current[plane]);
        if (!picture) { this.reportError(d.layers[layer].label, u); return; }
        this.drawnReq.side = reqId;
        this.lastImages.side = { base: picture, overlay: null, plane, volume: layer === "prior" ? "prior" : "current", index: si };
        this.redraw("side");
        this.el.sideCanvas.dataset.shown = `${layer}:${plane}:${si}`;
        this.el.sideCanvas.dataset.for = `${plane}:${s}`;  // the current slice this side picture belongs to
      });
    }
    this.drawMarks();
    this.updateInfo();
  }

  prefetch(reqId) {
    // Only for the picture still wanted, and after it is on screen, so prefetching never delays it.
    if (reqId !== this.req) return;
    const d = this.data, S = this.S, plane = S.plane, s = S.slice[plane], n = d.volumes.current[plane].n;
    const riding = this.rawOverlay();
    const wantOverlay = S.overlay && d.layers.zmap && d.layers.zmap.available && !riding;
    const urls = [];
    for (let k = 1; k <= PREFETCH_AHEAD + PREFETCH_BEHIND; k++) {
      const i = k <= PREFETCH_AHEAD ? s + S.dir * k : s - S.dir * (k - PREFETCH_AHEAD);
      if (i < 0 || i >= n) continue;
      urls.push(this.url("ct", plane, i, riding));
      if (wantOverlay) urls.push(this.url("zmap", plane, i));
      if (S.side !== "none" && d.layers[S.side]) urls.push(this.url(S.side, plane, this.sideIndex(plane, i)));
    }
    // Cancel prefetches that are still loading but no longer near (after a jump): they would
    // compete with the images the reader wants now.
    const keep = new Set(urls);
    keep.add(this.url("ct", plane, s, riding));
    if (wantOverlay) keep.add(this.url("zmap", plane, s));
    if (S.side !== "none" && d.layers[S.side]) keep.add(this.url(S.side, plane, this.sideIndex(plane)));
    for (const u of this.prefetching || []) {
      const e = this.cache.get(u);
      if (e && !e.ok && !e.err && !keep.has(u)) { this.forget(u); if (e.cancel) e.cancel(); }
    }
    this.prefetching = [...new Set(urls)];
    for (const u of this.prefetching) this.load(u, "low");
  }

  redraw(role) {
    const shown = this.lastImages[role];
    const canvas = this.el[role + "Canvas"];
    const ctx = canvas.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    const vp = this.vp[role];
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, vp.W, vp.H);
    if (!shown) return;
    const g = shown.volume === "prior" ? this.data.volumes.prior[shown.plane] : this.data.volumes.current[shown.plane];
    const center = role === "main" ? this.S.center[shown.plane] : this.S.sideCenter[shown.plane];
    const T = transformOf(vp, g, this.S.zoom, center);
    const x0 = T.x(0), y0 = T.y(0), w = g.nu * T.pu, h = g.nv * T.pv;
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(shown.base, x0, y0, w, h);
    canvas.dataset.imagePx = `${Math.round(w)}x${Math.round(h)}`;  // the drawn image's size (the bench's layout figures)
    if (role === "main" && shown.overlay && this.S.overlay) {
      ctx.globalAlpha = this.S.opacity;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(shown.overlay, x0, y0, w, h);
      ctx.globalAlpha = 1;
    }
  }

  // ------------------------------------------------------------------ marks
  drawMarks() {
    const d = this.data, S = this.S, plane = S.plane, s = S.slice[plane];
    const g = d.volumes.current[plane];
    const T = transformOf(this.vp.main, g, S.zoom, S.center[plane]);
    const R = d.markRadiusMm;
    const parts = [];
    let drawn = 0;
    const circle = (pos, radiusMm, cls, label, attrs) => {
      const [ms, mu, mv] = pos[plane];
      const dist = Math.abs(s - ms) * g.ds;
      if (dist > radiusMm) return;
      const r = Math.max(3, Math.sqrt(radiusMm * radiusMm - dist * dist) * T.pxPerMm);
      const on = Math.abs(s - ms) < 0.5 + 1e-6;
      const cx = T.x(mu), cy = T.y(mv);
      parts.push(`<g class="${cls} ${on ? "on" : "near"}" ${attrs}><circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="${r.toFixed(1)}"></circle>` +
        (on ? `<text x="${(cx + r + 3).toFixed(1)}" y="${(cy - r).toFixed(1)}">${esc(label)}</text>` : "") + `</g>`);
      drawn += 1;
    };
    for (const t of d.truth || []) circle(t.pos, t.r, "truth", t.label, "");
    for (const m of d.marks) circle(m.pos, R, "mark", `${m.n}: ${m.rating}`, `data-mark-id="${m.id}"`);
    const pending = d.pending || (S.localPending && S.localPending.plane === plane ? S.localPending : null);
    if (pending && pending.pos) circle(pending.pos, R, "pending", "new: rate it", `data-key="${esc(pending.key)}"`);
    else if (pending && pending.u !== undefined && pending.slice === s) {
      const cx = T.x(pending.u), cy = T.y(pending.v), r = Math.max(3, R * T.pxPerMm);
      parts.push(`<g class="pending on"><circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="${r.toFixed(1)}"></circle><text x="${(cx + r + 3).toFixed(1)}" y="${(cy - r).toFixed(1)}">saving…</text></g>`);
    }
    const ruler = this.rulerSvg(T);
    if (ruler) parts.push(ruler);
    this.el.svg.innerHTML = parts.join("");
    this.el.svg.dataset.drawn = String(drawn);
  }

  rulerSvg(T) {
    // The ruler lies on the slice it was drawn on; its length uses the pixel size of both image axes.
    const S = this.S, R = S.ruler, g = this.data.volumes.current[S.plane];
    if (!R || R.plane !== S.plane || R.slice !== S.slice[S.plane]) { delete this.el.svg.dataset.rulerMm; return ""; }
    const b = R.b || R.hover;
    if (!b) return `<g class="ruler"><circle cx="${T.x(R.a[0]).toFixed(1)}" cy="${T.y(R.a[1]).toFixed(1)}" r="3"></circle></g>`;
    const mm = Math.hypot((b[0] - R.a[0]) * g.du, (b[1] - R.a[1]) * g.dv);
    const x1 = T.x(R.a[0]), y1 = T.y(R.a[1]), x2 = T.x(b[0]), y2 = T.y(b[1]);
    if (R.b) this.el.svg.dataset.rulerMm = mm.toFixed(2); else delete this.el.svg.dataset.rulerMm;
    return `<g class="ruler${R.b ? "" : " live"}"><line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}"></line>` +
      `<circle cx="${x1.toFixed(1)}" cy="${y1.toFixed(1)}" r="3"></circle><circle cx="${x2.toFixed(1)}" cy="${y2.toFixed(1)}" r="3"></circle>` +
      `<text x="${(x2 + 8).toFixed(1)}" y="${(y2 - 6).toFixed(1)}">${mm.toFixed(1)} mm</text></g>`;
  }

  // ------------------------------------------------------------------ state changes
  activity() { this.S.lastActivity = Date.now(); }

  go(index) {
    const S = this.S, n = this.data.volumes.current[S.plane].n;
    const next = clamp(Math.round(index), 0, n - 1);
    if (next === S.slice[S.plane]) return;
    S.dir = next > S.slice[S.plane] ? 1 : -1;
    S.lastStep = Math.abs(next - S.slice[S.plane]);
    S.slice[S.plane] = next;
    this.activity();
    this.render();
    this.refreshReadout();
  }

  step(delta) { this.go(this.S.slice[this.S.plane] + delta); }

  setPlane(plane) {
    if (!PLANES.includes(plane) || plane === this.S.plane) return;
    this.S.plane = plane;
    this.activity();
    this.render();
  }

  setPreset(name) {
    const p = this.data.presets.find((x) => x.name === name);
    if (!p) return;
    this.S.preset = p.name;
    this.setWindow(p.level, p.width, p.name);
  }

  setWindow(level, width, preset) {
    const lim = this.data.windowLimits;
    if (!Number.isFinite(level) || !Number.isFinite(width)) return;
    this.S.wl = Math.round(clamp(level, lim.levelMin, lim.levelMax));
    this.S.ww = Math.round(clamp(width, lim.widthMin, lim.widthMax));
    this.S.preset = preset || "custom";
    this.wlProblem("");
    this.activity();
    this.render();
  }

  typedWindow() {
    // Typed numbers are checked, and a wrong one is named with what to type instead (never applied).
    const lim = this.data.windowLimits, el = this.el;
    const read = (input) => (String(input.value).trim() === "" ? NaN : Number(input.value));
    const width = read(el.ww), level = read(el.wl);
    const problems = [];
    if (!Number.isFinite(width) || width < lim.widthMin || width > lim.widthMax) {
      problems.push(`Window width must be a number greater than 0, from ${lim.widthMin} to ${lim.widthMax} HU${String(el.ww.value).trim() === "" ? "" : ` (not ${el.ww.value})`}.`);
    }
    if (!Number.isFinite(level) || level < lim.levelMin || level > lim.levelMax) {
      problems.push(`Window level must be a number from ${lim.levelMin} to ${lim.levelMax} HU${String(el.wl.value).trim() === "" ? "" : ` (not ${el.wl.value})`}.`);
    }
    el.ww.setAttribute("aria-invalid", String(problems.some((t) => t.startsWith("Window width"))));
    el.wl.setAttribute("aria-invalid", String(problems.some((t) => t.startsWith("Window level"))));
    if (problems.length) { this.wlProblem(problems.join(" ")); return; }
    this.setWindow(level, width);
  }

  wlProblem(text) {
    this.wlInvalid = !!text;
    this.el.wlMessage.textContent = text;
    this.root.dataset.wlInvalid = text ? "1" : "0";
    if (!text) { this.el.ww.removeAttribute("aria-invalid"); this.el.wl.removeAttribute("aria-invalid"); }
  }

  setTool(tool) {
    if (!TOOLS.some((t) => t[0] === tool) || (tool === "mark" && !this.data.canMark)) return;
    this.S.tool = tool;
    if (tool !== "ruler" && this.S.ruler && !this.S.ruler.b) this.S.ruler = null;
    this.activity();
    this.updateInfo(); this.drawMarks();
  }

  // ------------------------------------------------------------------ cine
  toggleCine(on) {
    const S = this.S;
    S.cine = on === undefined ? !S.cine : !!on;
    clearTimeout(this.cineTimer);
    window.removeEventListener("resize", this.onResize);
    if (S.cine) this.cineTimer = setTimeout(() => this.cineTick(), 1000 / S.fps);
    this.updateInfo();
  }

  stopCine() { if (this.S.cine) this.toggleCine(false); }

  cineTick() {
    // One slice per frame, looping; a frame waits for the slice before it to be on screen, so cine
    // never runs ahead of the images.
    const S = this.S;
    if (!S.cine || !this.root.isConnected) return;
    this.cineTimer = setTimeout(() => this.cineTick(), 1000 / S.fps);
    const c = this.el.mainCanvas, plane = S.plane, s = S.slice[plane];
    if (!c.dataset.shown || !c.dataset.shown.startsWith(`${plane}:${s}:`)) return;
    const n = this.data.volumes.current[plane].n;
    this.go((s + 1) % n);
    S.dir = 1;
  }

  typedFps() {
    const fps = Number(this.el.fps.value);
    if (!Number.isInteger(fps) || fps < CINE_FPS[0] || fps > CINE_FPS[1]) {
      this.status(`Cine speed must be a whole number of frames per second from ${CINE_FPS[0]} to ${CINE_FPS[1]}.`);
      this.el.fps.value = this.S.fps;
      return;
    }
    this.S.fps = fps;
    this.status("");
    this.root.focus({ preventScroll: true });  // the keyboard goes back to the viewer (Space: cine)
    if (this.S.cine) this.toggleCine(true);
  }

  toggleFull(on) {
    this.S.full = on === undefined ? !this.S.full : !!on;
    this.root.classList.toggle("full", this.S.full);
    this.layout(); this.redraw("main"); this.redraw("side"); this.drawMarks(); this.updateInfo();
  }

  setZoom(zoom) {
    this.S.zoom = clamp(zoom, 0.5, 16);
    this.activity();
    this.redraw("main"); this.redraw("side"); this.drawMarks(); this.updateInfo();
  }

  reset() {
    const S = this.S, p = this.data.presets[0];
    S.zoom = 1;
    for (const k of PLANES) { S.center[k] = null; S.sideCenter[k] = null; S.priorOffset[k] = 0; }
    this.setWindow(p.level, p.width, p.name);
  }

  // ------------------------------------------------------------------ input
  onWheel(e, role) {
    e.preventDefault();
    this.activity();
    if (e.ctrlKey) { this.setZoom(this.S.zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15)); return; }
    const delta = Math.sign(e.deltaY) || 0;
    if (!delta) return;
    this.stopCine();
    if (role === "side" && this.S.side === "prior") {
      this.S.priorOffset[this.S.plane] += delta;
      this.render();
      this.refreshReadout();
      return;
    }
    this.step(delta);
  }

  transformFor(role) {
    const S = this.S;
    const g = role === "main" ? this.data.volumes.current[S.plane] : this.sideGeometry(S.plane);
    return { g, T: transformOf(this.vp[role], g, S.zoom, (role === "main" ? S.center : S.sideCenter)[S.plane]) };
  }

  dragMode(e) {
    // right-drag or Ctrl+left-drag: window/level; middle-drag or Shift+left-drag: pan; else the tool's
    if (e.button === 2 || (e.button === 0 && e.ctrlKey)) return "wl";
    if (e.button === 1 || (e.button === 0 && e.shiftKey)) return "pan";
    return this.S.tool === "wl" ? "wl" : "pan";
  }

  onPointerDown(e, role) {
    this.activity();
    const rect = this.el[role].getBoundingClientRect();
    const S = this.S;
    const { T } = this.transformFor(role);
    if (e.button === 1) e.preventDefault();
    this.drag = { role, button: e.button, mode: this.dragMode(e), plain: !(e.ctrlKey || e.shiftKey || e.altKey || e.metaKey),
      x0: e.clientX, y0: e.clientY, rect, moved: false, wl: S.wl, ww: S.ww, cu: T.cu, cv: T.cv, pu: T.pu, pv: T.pv };
    try { this.el[role].setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
  }

  onPointerMove(e, role) {
    const D = this.drag;
    if (!D) { this.hoverAt(role, e); return; }
    const dx = e.clientX - D.x0, dy = e.clientY - D.y0;
    if (!D.moved && Math.hypot(dx, dy) < 4) return;
    D.moved = true;
    this.activity();
    const S = this.S;
    if (D.mode === "wl") {
      // left/right: width, up/down: level (as in most PACS)
      // one render per frame, with the newest position (moves within a frame are not lost)
      this.wlWanted = [D.wl + dy * 2, D.ww + dx * 4];
      if (!this.wlFrame) this.wlFrame = requestAnimationFrame(() => { this.wlFrame = null; this.setWindow(...this.wlWanted); });
      return;
    }
    const centers = D.role === "main" ? S.center : S.sideCenter;
    centers[S.plane] = [D.cu - dx / D.pu, D.cv - dy / D.pv];
    this.redraw(D.role);
    if (D.role === "main") this.drawMarks();
  }

  onPointerUp(e) {
    const D = this.drag;
    this.drag = null;
    if (!D || D.moved || D.button !== 0 || !D.plain || D.role !== "main") return;
    const x = e.clientX - D.rect.left, y = e.clientY - D.rect.top;
    if (this.S.tool === "mark") this.onClick(x, y);
    else if (this.S.tool === "ruler") this.rulerClick(x, y);
  }

  onDoubleClick(e, role) {
    // a double click marks with any tool but the ruler (with the Mark tool its first click already did)
    if (role !== "main" || this.S.tool === "ruler" || this.S.tool === "mark" || e.button !== 0) return;
    const rect = this.el.main.getBoundingClientRect();
    this.onClick(e.clientX - rect.left, e.clientY - rect.top);
  }

  rulerClick(x, y) {
    const S = this.S, { g, T } = this.transformFor("main");
    const u = T.u(x), v = T.v(y);
    if (u < 0 || v < 0 || u >= g.nu || v >= g.nv) { this.status("Click on the image to measure."); return; }
    const R = S.ruler;
    if (!R || R.b || R.plane !== S.plane || R.slice !== S.slice[S.plane]) S.ruler = { plane: S.plane, slice: S.slice[S.plane], a: [u, v], b: null };
    else R.b = [u, v];
    this.status("");
    this.activity();
    this.drawMarks();
  }

  // ------------------------------------------------------------------ HU readout and crosshair
  hoverAt(role, e) {
    const rect = this.el[role].getBoundingClientRect();
    this.hover = { role, x: e.clientX - rect.left, y: e.clientY - rect.top };
    this.localizer.drawLines();
    const R = this.S.ruler;
    if (role === "main" && R && !R.b && this.S.tool === "ruler") {
      const { T } = this.transformFor("main");
      R.hover = [T.u(this.hover.x), T.v(this.hover.y)];
      this.drawMarks();
    }
    this.refreshReadout();
  }

  leave(role) {
    if (this.hover && this.hover.role === role) this.hover = null;
    this.localizer.drawLines();
    this.el.crossSvg.innerHTML = "";
    delete this.el.crossSvg.dataset.at;
  }

  refreshReadout() {
    // One request in flight at most; the newest position waits for it (never a queue of stale ones).
    const H = this.hover;
    if (!H) return;
    const d = this.data, S = this.S, plane = S.plane, role = H.role;
    const layer = role === "main" ? "ct" : S.side;
    const L = d.layers[layer];
    if (!L || L.role === "overlay" || L.available === false || (role === "side" && S.side === "none")) return;
    const { T } = this.transformFor(role);
    const slice = role === "main" ? S.slice[plane] : this.sideIndex(plane);
    let q = `u=${T.u(H.x).toFixed(3)}&v=${T.v(H.y).toFixed(3)}`;
    const side = d.layers[S.side];
    if (role === "main" && side && side.available !== false && side.role === "side") q += `&linked=${encodeURIComponent(S.side)}&linked_slice=${this.sideIndex(plane)}`;
    const url = `${d.api}/hu/${encodeURIComponent(d.ticket)}/${layer}/${plane}/${slice}?${q}`;
    if (this.huBusy) { this.huNext = url; return; }
    this.fetchReadout(url, role);
  }

  fetchReadout(url, role) {
    this.huBusy = true;
    fetch(url, { credentials: "same-origin" })
      .then((r) => r.json().then((j) => ({ ok: r.ok, j })))
      .then(({ ok, j }) => { if (ok) this.showReadout(j, role); else this.el.readHere.textContent = j.error || "No HU here."; })
      .catch(() => { this.el.readHere.textContent = "The HU could not be read."; })
      .finally(() => {
        this.huBusy = false;
        if (this.huNext) { const next = this.huNext; this.huNext = null; this.fetchReadout(next, this.hover ? this.hover.role : role); }
      });
  }

  showReadout(j, role) {
    const el = this.el, S = this.S;
    const fmt = (r) => (r.inside ? `${r.label}: ${r.value.toFixed(0)} HU` : `${r.label}: outside the image`);
    const where = (r) => (r.inside ? ` · ${r.plane} slice ${r.slice + 1} · voxel (${r.voxel.join(", ")}) · (${r.mm.map((c) => c.toFixed(1)).join(", ")}) mm LPS` : "");
    el.readHere.textContent = fmt(j) + where(j);
    el.readout.dataset.layer = j.layer;
    el.readout.dataset.hu = j.inside ? String(j.value) : "";
    el.readout.dataset.voxel = j.inside ? j.voxel.join(",") : "";
    el.readout.dataset.slice = String(j.slice);
    const box = role === "main" ? el.mainHu : el.sideHu;
    box.textContent = j.inside ? `${j.value.toFixed(0)} HU` : "";
    const link = j.linked;
    el.readLinked.textContent = link ? ` | ${fmt(link)}${link.inside ? ` (slice ${link.slice + 1}${link.layer === "prior" ? (link.registered ? ", through the registration" : ", by table position") : ""})` : ""}` : "";
    el.readout.dataset.linkedHu = link && link.inside ? String(link.value) : "";
    if (role === "main") el.sideHu.textContent = link && link.inside ? `${link.value.toFixed(0)} HU` : "";
    // crosshair on the panel beside, at the linked point (the same anatomy)
    if (link && S.side !== "none" && role === "main") {
      const { T } = this.transformFor("side");
      const x = T.x(link.u), y = T.y(link.v), vp = this.vp.side;
      el.crossSvg.innerHTML = `<g class="crosshair"><line x1="0" y1="${y.toFixed(1)}" x2="${vp.W}" y2="${y.toFixed(1)}"></line>` +
        `<line x1="${x.toFixed(1)}" y1="0" x2="${x.toFixed(1)}" y2="${vp.H}"></line></g>`;
      el.crossSvg.dataset.at = `${link.u.toFixed(2)},${link.v.toFixed(2)}`;
    } else { el.crossSvg.innerHTML = ""; delete el.crossSvg.dataset.at; }
  }

  onClick(x, y) {
    const d = this.data, S = this.S;
    if (!d.canMark) { this.status("Marks cannot be placed on this case."); return; }
    const now = performance.now();
    if (S.lastClick && now - S.lastClick.t < DOUBLE_CLICK_MS && Math.hypot(x - S.lastClick.x, y - S.lastClick.y) < DOUBLE_CLICK_PX) return;
    S.lastClick = { t: now, x, y };
    this.stopCine();
    const plane = S.plane, s = S.slice[plane], g = d.volumes.current[plane];
    const T = transformOf(this.vp.main, g, S.zoom, S.center[plane]);
    const u = T.u(x), v = T.v(y);
    if (u < 0 || v < 0 || u >= g.nu || v >= g.nv) { this.status("Click on the image to place a mark."); return; }
    const key = `${d.instance}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
    S.localPending = { key, plane, slice: s, u, v };
    this.drawMarks();
    this.status("");
    this.send("click", { key, plane, slice: s, x, y, W: this.vp.main.W, H: this.vp.main.H, zoom: S.zoom, cu: T.cu, cv: T.cv });
  }

  handleKey(e) {
    if (!this.root.isConnected) return;
    const target = (e.composedPath && e.composedPath()[0]) || e.target;
    const tag = target && target.tagName ? target.tagName.toUpperCase() : "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    if (e.altKey || e.metaKey || (e.ctrlKey && e.key !== "Control")) return;
    const S = this.S, d = this.data, key = e.key;
    const pending = d.pending || S.localPending;
    let handled = true;
    const tool = TOOLS.find((t) => t[2] === key.toLowerCase());
    if (["ArrowDown", "ArrowUp", "PageDown", "PageUp", "Home", "End"].includes(key)) this.stopCine();
    if (key === "ArrowDown") this.step(1);
    else if (key === "ArrowUp") this.step(-1);
    else if (key === "PageDown") this.step(10);
    else if (key === "PageUp") this.step(-10);
    else if (key === "Home") this.go(0);
    else if (key === "End") this.go(d.volumes.current[S.plane].n - 1);
    else if (key === " ") this.toggleCine();
    else if (pending && d.ratingKeys.includes(key)) this.send("rate", { key: pending.key, rating: Number(key) });
    else if (key === "Escape" && pending) { S.localPending = null; this.send("cancel", { key: pending.key }); this.drawMarks(); }
    else if (key === "Escape" && S.ruler) { S.ruler = null; this.drawMarks(); }
    else if (key === "Escape" && S.full) this.toggleFull(false);
    else if (key === "f" || key === "F") this.toggleFull();
    else if (tool) this.setTool(tool[0]);
    else if (key === "+" || key === "=") this.setZoom(S.zoom * 1.25);
    else if (key === "-" || key === "_") this.setZoom(S.zoom / 1.25);
    else if (key === "r" || key === "R") this.reset();
    else if (key === "a" || key === "A") this.setPlane("axial");
    else if (key === "c" || key === "C") this.setPlane("coronal");
    else if (key === "s" || key === "S") this.setPlane("sagittal");
    else if ((key === "o" || key === "O") && d.layers.zmap) { S.overlay = !S.overlay; if (this.el.overlay) this.el.overlay.checked = S.overlay; this.render(); }
    else if ((key === "p" || key === "P") && d.layers.prior) { S.side = S.side === "prior" ? "none" : "prior"; if (this.el.sideSelect) this.el.sideSelect.value = S.side; this.layout(); this.render(); }
    else {
      const preset = d.presets.find((p) => p.key && p.key === key.toLowerCase());
      if (preset) this.setPreset(preset.name);
      else handled = false;
    }
    if (handled) { e.preventDefault(); this.activity(); }
  }

  // ------------------------------------------------------------------ server
  viewState() {
    const S = this.S;
    return { plane: S.plane, slice: { ...S.slice }, preset: S.preset, wl: S.wl, ww: S.ww, zoom: S.zoom, overlay: S.overlay, opacity: S.opacity, side: S.side, tool: S.tool, fps: S.fps };
  }

  send(name, value) {
    this.S.lastBeat = Date.now();
    this.trigger(name, { ...value, view: this.viewState(), t: Date.now() });
  }

  beat() {
    if (!this.root.isConnected) return;
    if (this.S.lastActivity > this.S.lastBeat) this.send("beat", {});
  }

  status(text) { this.el.status.textContent = text || ""; }

  updateInfo() {
    const S = this.S, d = this.data, plane = S.plane, s = S.slice[plane], g = d.volumes.current[plane];
    const el = this.el;
    this.root.querySelectorAll("button.plane").forEach((b) => b.classList.toggle("active", b.dataset.plane === plane));
    this.root.querySelectorAll("button.preset").forEach((b) => b.classList.toggle("active", b.dataset.preset === S.preset));
    this.root.querySelectorAll("button.tool").forEach((b) => b.classList.toggle("active", b.dataset.tool === S.tool));
    if (!this.wlInvalid) { el.ww.value = S.ww; el.wl.value = S.wl; }
    if (document.activeElement !== el.fps && (!this.root.getRootNode || this.root.getRootNode().activeElement !== el.fps)) el.fps.value = S.fps;
    el.cine.textContent = S.cine ? "❚❚ Pause" : "▶ Cine";
    el.cine.classList.toggle("active", S.cine);
    el.full.classList.toggle("active", S.full);
    this.root.dataset.cine = S.cine ? "playing" : "paused";
    this.root.dataset.tool = S.tool;
    this.el.main.dataset.tool = S.tool;
    if (el.overlay) el.overlay.checked = !!S.overlay;
    if (el.opacity) el.opacity.value = S.opacity;
    if (el.sideSelect) el.sideSelect.value = S.side;
    el.slider.max = g.n - 1; el.slider.value = s;
    el.sliceLabel.textContent = `${plane} ${s + 1} / ${g.n}  (${g.pos[s].toFixed(1)} mm)`;
    el.mainInfo.textContent = `Current · ${plane} ${s + 1}/${g.n} · W ${S.ww} L ${S.wl} · ×${S.zoom.toFixed(2)}`;
    if (S.side !== "none" && d.layers[S.side]) {
      const si = this.sideIndex(plane), sg = this.sideGeometry(plane);
      const offset = S.side === "prior" && S.priorOffset[plane] ? ` (offset ${S.priorOffset[plane] > 0 ? "+" : ""}${S.priorOffset[plane]})` : "";
      el.sideInfo.textContent = `${d.layers[S.side].label} · ${plane} ${si + 1}/${sg.n}${offset}`;
    }
    this.root.dataset.plane = plane;
    this.root.dataset.slice = String(s);
    this.localizer.update();
  }

  update(data, trigger) {
    const ticketChanged = data.ticket !== this.data.ticket;
    this.data = data;
    this.trigger = trigger;
    if (this.S.localPending && data.handledKey === this.S.localPending.key) this.S.localPending = null;
    if (data.jump && data.jump.nonce !== this.S.jumpNonce) {
      this.S.jumpNonce = data.jump.nonce;
      const m = data.marks.find((x) => x.id === data.jump.mark) || (data.truth || []).find((x) => x.label === data.jump.mark);
      if (m) {
        const S = this.S;
        S.slice[S.plane] = clamp(Math.round(m.pos[S.plane][0]), 0, data.volumes.current[S.plane].n - 1);
        if (S.zoom > 1) S.center[S.plane] = [m.pos[S.plane][1], m.pos[S.plane][2]];
      }
    }
    if (ticketChanged) { this.clearCache(); this.render(); return; }
    this.render();
  }
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const root = parentElement.querySelector(".tsct-viewer");
  if (!root || !data) return undefined;
  let viewer = root.__tsct;
  if (!viewer || viewer.data.instance !== data.instance) {
    if (viewer) viewer.destroy();
    viewer = root.__tsct = new Viewer(root, data, setTriggerValue);
  } else {
    viewer.update(data, setTriggerValue);
  }
  return () => { if (root.__tsct) { root.__tsct.destroy(); root.__tsct = null; } };
}
