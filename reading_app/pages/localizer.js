// The localizer beside the slice viewer (loaded before viewer.js into the same component module).
//
// A small frontal (coronal) picture of the whole current exam — a lateral (sagittal) one while the
// main view is coronal — with a line where the main view's slice lies, the cursor's point on it,
// and the marks as dots. A click (or a drag) on it goes to the slice under the pointer. The picture
// is the server's maximum-intensity projection of the current CT (/localizer route, the reading's
// ticket; it never shows an aid). It is laid out as that plane's reformat: row r of the coronal
// picture is axial slice r, column c is sagittal slice c (reading_app.workstation.localizer).
//
// Layout: the rail beside the main panel (the localizer above the viewer's controls) is 15 % of the
// viewer's width (136-220 px); the localizer keeps its true aspect ratio within the rail and at most
// 60 % of the panel's height, and is left out of viewers narrower than 560 px.

const LOCALIZER_OF = { axial: "coronal", sagittal: "coronal", coronal: "sagittal" };
const RAIL_SHARE = 0.15;
const RAIL_PX = [136, 220];
const LOCALIZER_MIN_VIEWER_PX = 560;

class Localizer {
  static html() {
    return `<div class="loc" data-testid="tsct-localizer" title="localizer: click to go to that slice"><canvas></canvas><svg xmlns="http://www.w3.org/2000/svg"></svg></div>
      <div class="loc-caption"></div>`;
  }

  static railWidth(viewerWidth) { return Math.round(Math.max(RAIL_PX[0], Math.min(RAIL_PX[1], viewerWidth * RAIL_SHARE))); }

  static shown(viewerWidth) { return viewerWidth >= LOCALIZER_MIN_VIEWER_PX; }

  constructor(viewer) {
    this.v = viewer;
    this.box = viewer.root.querySelector(".loc");
    this.canvas = this.box.querySelector("canvas");
    this.svg = this.box.querySelector("svg");
    this.caption = viewer.root.querySelector(".loc-caption");
    this.pictures = new Map();  // url -> {img, ok}
    this.vp = { W: 0, H: 0 };
    this.railW = 0;
    this.maxH = 0;
    this.drawnUrl = null;
    const goTo = (e) => { this.v.stopCine(); this.v.activity(); this.v.go(this.sliceAt(e)); };
    this.box.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || !this.vp.W) return;
      e.preventDefault();
      this.dragging = true;
      try { this.box.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ }
      goTo(e);
    });
    this.box.addEventListener("pointermove", (e) => { if (this.dragging) goTo(e); });
    this.box.addEventListener("pointerup", () => { this.dragging = false; });
    this.box.addEventListener("wheel", (e) => this.v.onWheel(e, "main"), { passive: false });
  }

  plane() { return LOCALIZER_OF[this.v.S.plane]; }

  geometry() { return this.v.data.volumes.current[this.plane()]; }

  url(plane) {
    const d = this.v.data;
    return `${d.api}/localizer/${encodeURIComponent(d.ticket)}/${plane}`;
  }

  layout(railW, maxH) {
    this.railW = railW;
    this.maxH = maxH;
    this.box.style.display = railW ? "block" : "none";
    this.caption.style.display = railW ? "block" : "none";
    if (!railW) { this.vp = { W: 0, H: 0 }; return; }
    const g = this.geometry();
    const aspect = (g.nv * g.dv) / (g.nu * g.du);  // height / width in mm
    let W = railW, H = Math.round(W * aspect);
    const most = Math.round(maxH * 0.6);  // the controls below it stay in the rail
    if (H > most) { H = most; W = Math.round(H / aspect); }
    this.vp = { W, H };
    const dpr = window.devicePixelRatio || 1;
    this.box.style.width = W + "px"; this.box.style.height = H + "px";
    this.canvas.width = Math.round(W * dpr); this.canvas.height = Math.round(H * dpr);
    this.canvas.style.width = W + "px"; this.canvas.style.height = H + "px";
    this.svg.setAttribute("width", W); this.svg.setAttribute("height", H); this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    this.drawnUrl = null;
    this.update();
  }

  transform() { return transformOf(this.vp, this.geometry(), 1, null); }

  load(u) {
    // the picture of this plane, once per ticket; a failure is asked for once more after a moment
    // (right after log-in the session cookie may still be on its way)
    let p = this.pictures.get(u);
    if (p) return p.promise;
    p = { img: null, ok: false };
    const attempt = (left) => {
      const img = new Image();
      img.src = u;
      return img.decode().then(() => { p.img = img; p.ok = true; return p; }, () => {
        if (left > 0) return new Promise((r) => setTimeout(r, 700)).then(() => attempt(left - 1));
        this.pictures.delete(u);
        return p;
      });
    };
    p.promise = attempt(1);
    this.pictures.set(u, p);
    return p.promise;
  }

  update() {
    // Called whenever the viewer's state was shown (slice, plane, ticket): the picture when it is
    // another one, and the line and the cursor every time.
    if (!this.vp.W) return;
    const plane = this.plane(), u = this.url(plane);
    this.caption.textContent = `${plane} projection · click to go`;
    if (u !== this.drawnUrl) {
      this.drawnUrl = u;
      this.load(u).then((p) => {
        if (this.drawnUrl !== u) return;
        if (!p.ok) { this.v.status("The localizer could not be loaded."); return; }
        const ctx = this.canvas.getContext("2d"), dpr = window.devicePixelRatio || 1, T = this.transform(), g = this.geometry();
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.fillStyle = "#000";
        ctx.fillRect(0, 0, this.vp.W, this.vp.H);
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(p.img, T.x(0), T.y(0), g.nu * T.pu, g.nv * T.pv);
        this.canvas.dataset.shown = plane;
      });
    }
    this.drawLines();
  }

  // Where the main view's slice s lies on the picture: axial slice s is row s (a horizontal
  // line), a sagittal or coronal slice s is column s (a vertical one).
  lineOf(mainPlane, s) { return mainPlane === "axial" ? { across: true, at: s + 0.5 } : { across: false, at: s + 0.5 }; }

  sliceAt(e) {
    const rect = this.box.getBoundingClientRect(), T = this.transform();
    const S = this.v.S, n = this.v.data.volumes.current[S.plane].n;
    const at = S.plane === "axial" ? T.v(e.clientY - rect.top) : T.u(e.clientX - rect.left);
    return clamp(Math.floor(at), 0, n - 1);
  }

  cursorPoint() {
    // The cursor on the main panel, as a point of the picture: the main image's (u, v) on slice s.
    const H = this.v.hover;
    if (!H || H.role !== "main") return null;
    const S = this.v.S, s = S.slice[S.plane], { T } = this.v.transformFor("main");
    const u = T.u(H.x), v = T.v(H.y);
    return S.plane === "axial" ? [u, s + 0.5] : [s + 0.5, v];
  }

  drawLines() {
    if (!this.vp.W) return;
    const S = this.v.S, d = this.v.data, s = S.slice[S.plane], T = this.transform(), W = this.vp.W, H = this.vp.H;
    const L = this.lineOf(S.plane, s), parts = [];
    const px = L.across ? T.y(L.at) : T.x(L.at);
    parts.push(L.across ? `<line class="slice-line" x1="0" y1="${px.toFixed(1)}" x2="${W}" y2="${px.toFixed(1)}"></line>`
      : `<line class="slice-line" x1="${px.toFixed(1)}" y1="0" x2="${px.toFixed(1)}" y2="${H}"></line>`);
    const lp = this.plane();
    for (const m of d.marks || []) parts.push(`<circle class="mark-dot" cx="${T.x(m.pos[lp][1]).toFixed(1)}" cy="${T.y(m.pos[lp][2]).toFixed(1)}" r="2.5"></circle>`);
    for (const t of d.truth || []) parts.push(`<circle class="truth-dot" cx="${T.x(t.pos[lp][1]).toFixed(1)}" cy="${T.y(t.pos[lp][2]).toFixed(1)}" r="3"></circle>`);
    const c = this.cursorPoint();
    if (c) {
      const x = T.x(c[0]), y = T.y(c[1]);
      parts.push(`<g class="cursor"><line x1="${(x - 6).toFixed(1)}" y1="${y.toFixed(1)}" x2="${(x + 6).toFixed(1)}" y2="${y.toFixed(1)}"></line>` +
        `<line x1="${x.toFixed(1)}" y1="${(y - 6).toFixed(1)}" x2="${x.toFixed(1)}" y2="${(y + 6).toFixed(1)}"></line></g>`);
      this.svg.dataset.cursor = `${c[0].toFixed(2)},${c[1].toFixed(2)}`;
    } else delete this.svg.dataset.cursor;
    this.svg.innerHTML = parts.join("");
    this.svg.dataset.line = `${S.plane}:${s}`;        // the main view's slice the line stands for
    this.svg.dataset.linePx = px.toFixed(1);         // where it is drawn (px from the picture's top or left)
  }
}
