"""The report's stylesheet and script, inlined into every page (no external resources)."""

from __future__ import annotations

CSS = """
:root{--bg:#f4f6f9;--card:#fff;--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;
--accent:#2563eb;--accent-soft:#eff6ff;--good:#15803d;--bad:#b91c1c}
*{box-sizing:border-box}
html{scroll-padding-top:60px}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:var(--ink);background:var(--bg)}
a{color:var(--accent)}
header.top{background:linear-gradient(120deg,#0f172a,#1e3a8a 60%,#2563eb);color:#fff;
padding:28px 40px 26px}
header.top h1{margin:0;font-size:24px;font-weight:650;letter-spacing:-.01em}
header.top .sub{opacity:.8;margin-top:4px;word-break:break-all}
.kpis{display:flex;gap:12px;flex-wrap:wrap;margin-top:20px}
.kpi{background:rgba(255,255,255,.1);border:1px solid rgba(255,255,255,.18);border-radius:10px;
padding:8px 16px;min-width:120px}
.kpi b{display:block;font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.kpi span{font-size:11px;opacity:.8;text-transform:uppercase;letter-spacing:.06em}
nav.toc{position:sticky;top:0;z-index:20;display:flex;gap:2px;padding:0 32px;overflow-x:auto;
background:rgba(255,255,255,.96);border-bottom:1px solid var(--line);
box-shadow:0 1px 3px rgba(15,23,42,.06)}
nav.toc a{padding:12px 14px;color:var(--muted);text-decoration:none;font-weight:550;
white-space:nowrap;border-bottom:2px solid transparent}
nav.toc a:hover,nav.toc a.active{color:var(--accent);border-bottom-color:var(--accent)}
main{max-width:1440px;margin:0 auto;padding:20px 40px 60px}
section.part{margin:8px 0 36px}
section.part>h2{font-size:20px;margin:16px 0 2px;letter-spacing:-.01em}
.lead{color:var(--muted);margin:0 0 14px;max-width:110ch}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:16px;
align-items:start}
.grid.wide{grid-template-columns:repeat(auto-fill,minmax(460px,1fr))}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:14px 18px;
box-shadow:0 1px 2px rgba(15,23,42,.05);min-width:0}
.card.span{grid-column:1/-1}
.stack>.card+.card{margin-top:16px}
.card h3{margin:0 0 10px;font-size:15px;font-weight:650}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:5px 7px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
th{font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);
font-weight:650;background:#f9fafb}
td.num,th.num{text-align:right;white-space:nowrap}
tbody tr:hover td{filter:brightness(.97)}
tr.sel td{background:var(--accent-soft);font-weight:600}
td.best{font-weight:700;box-shadow:inset 0 0 0 2px var(--good)}
td.best::after{content:" \\2605";color:var(--good)}
table.confusion{width:auto}
table.confusion td,table.confusion th{text-align:center;padding:4px 6px;min-width:38px}
table.confusion th.rowh{text-align:right;text-transform:none;letter-spacing:0;font-size:12px;
max-width:220px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
table.confusion th.colh span{display:inline-block;max-height:150px;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}
table.confusion th.colh{writing-mode:vertical-rl;transform:rotate(180deg);text-transform:none;
letter-spacing:0;font-size:12px;vertical-align:bottom;height:auto;padding:6px 2px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:0}
dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;font-variant-numeric:tabular-nums;word-break:break-word}
pre.config{max-height:460px;overflow:auto;columns:4 260px;column-rule:1px solid #334155;
white-space:pre-wrap;overflow-wrap:anywhere;
background:#0f172a;color:#e2e8f0;padding:12px 14px;
border-radius:8px;font-size:12px;line-height:1.45;margin:0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;
background:#eef2ff;color:#3730a3;white-space:nowrap}
.badge.ok{background:#dcfce7;color:#166534}
.badge.warn{background:#fef3c7;color:#92400e}
.chips{display:flex;flex-wrap:wrap;gap:6px;margin:8px 0}
.chip{font-size:12px;padding:2px 9px;border-radius:6px;background:#f3f4f6;border:1px solid
var(--line)}
.chip.hi{background:#fef2f2;border-color:#fecaca;color:#991b1b;font-weight:600}
.note{color:var(--muted);font-size:12px}
.warnbox{background:#fff7ed;border:1px solid #fed7aa;color:#9a3412;padding:10px 14px;
border-radius:8px}
.bar{height:6px;background:var(--line);border-radius:3px;overflow:hidden;margin:6px 0 10px}
.bar>span{display:block;height:100%;background:var(--accent)}
details{margin-top:8px}
details>summary{cursor:pointer;color:var(--accent);font-weight:550;user-select:none}
img{max-width:100%;height:auto}
img.zoom{cursor:zoom-in}
.cluster header{display:flex;align-items:center;gap:8px;flex-wrap:wrap;margin-bottom:2px}
.cluster header h3{margin:0}
.dot{display:inline-block;width:11px;height:11px;border-radius:50%;flex:none}
.reps{display:flex;gap:8px;flex-wrap:wrap;margin:10px 0}
.reps figure{margin:0;text-align:center;font-size:11px;color:var(--muted);max-width:190px}
.reps img{height:72px;width:auto;image-rendering:pixelated;border-radius:6px;
border:1px solid var(--line);display:block;margin:0 auto}
.reps figcaption{white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.sheet{position:relative;margin-top:10px;border-radius:6px;overflow:hidden}
.sheet img{display:block;width:100%;image-rendering:pixelated}
.sheet.collapsed{max-height:96px}
.sheet.collapsed::after{content:"";position:absolute;inset:auto 0 0 0;height:34px;
background:linear-gradient(rgba(255,255,255,0),#fff)}
button.toggle{margin-top:6px;border:1px solid var(--line);background:#fff;color:var(--accent);
border-radius:6px;padding:3px 10px;font:inherit;font-size:12px;font-weight:600;cursor:pointer}
button.toggle:hover{background:var(--accent-soft)}
table.meta td{padding:3px 6px}
table.meta tr.distinct td{background:#fef2f2}
table.meta tr.shared td:first-child,table.meta tr.distinct td:first-child{font-weight:650}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px}
.plots figure{margin:0}
.plots figure.main{max-width:640px}
.plots figcaption{font-size:12px;color:var(--muted);text-align:center}
.map-wrap{position:relative}
.map-wrap svg{width:100%;height:auto;max-height:640px;display:block;background:#fbfcfd;
border:1px solid var(--line);border-radius:8px}
.map-wrap circle{stroke:#fff;stroke-width:.6;cursor:pointer}
.map-wrap circle:hover,.map-wrap circle.hl{stroke:#111;stroke-width:1.6}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin-top:10px;font-size:12px}
.legend .item{display:inline-flex;align-items:center;gap:6px;color:inherit;text-decoration:none}
a.item:hover{text-decoration:underline}
table.compact{width:auto;min-width:50%}
#map-tip{position:absolute;display:none;pointer-events:none;z-index:5;background:#fff;
border:1px solid var(--line);border-radius:8px;padding:8px;box-shadow:0 6px 20px
rgba(15,23,42,.18);font-size:12px;max-width:260px}
#map-tip.show{display:block}
#map-tip .thumb{width:96px;height:96px;image-rendering:pixelated;border-radius:4px;
background-repeat:no-repeat;background-color:#eee;margin-bottom:6px}
svg.bars text{font-size:11px;fill:#4b5563;font-family:inherit}
.lightbox{position:fixed;inset:0;z-index:50;display:none;align-items:center;
justify-content:center;background:rgba(15,23,42,.86);cursor:zoom-out;padding:20px}
.lightbox.open{display:flex}
.lightbox img{max-width:96vw;max-height:94vh;image-rendering:pixelated;background:#fff;
border-radius:6px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:0 0 30px}
@media print{nav.toc{display:none}.sheet.collapsed{max-height:none}
.sheet.collapsed::after,button.toggle{display:none}header.top{padding:12px}}
"""

JS = """
(function () {
  "use strict";
  function on(root, type, selector, handler) {
    root.addEventListener(type, function (ev) {
      var target = ev.target instanceof Element ? ev.target.closest(selector) : null;
      if (target) { handler(ev, target); }
    });
  }
  // "show all members": expand or collapse a contact sheet
  on(document, "click", "button.toggle", function (ev, button) {
    var sheet = document.getElementById(button.getAttribute("data-target"));
    if (!sheet) { return; }
    var collapsed = sheet.classList.toggle("collapsed");
    button.textContent = collapsed ? button.getAttribute("data-more")
                                   : button.getAttribute("data-less");
  });
  // click an image to see it at full size
  var box = document.getElementById("lightbox");
  if (box) {
    var big = box.querySelector("img");
    on(document, "click", "img.zoom", function (ev, img) {
      big.src = img.src; big.alt = img.alt; box.classList.add("open");
    });
    box.addEventListener("click", function () { box.classList.remove("open"); });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { box.classList.remove("open"); }
    });
  }
  // highlight the section in view in the sticky navigation
  var links = Array.prototype.slice.call(document.querySelectorAll("nav.toc a"));
  if (links.length && "IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (!entry.isIntersecting) { return; }
        links.forEach(function (a) {
          a.classList.toggle("active", a.getAttribute("href") === "#" + entry.target.id);
        });
      });
    }, {rootMargin: "-45% 0px -50% 0px"});
    document.querySelectorAll("section.part").forEach(function (s) { observer.observe(s); });
  }
  // 2-D map: a thumbnail, the id and the cluster of the point under the mouse
  var data = document.getElementById("map-data");
  var wrap = document.querySelector(".map-wrap");
  if (!data || !wrap) { return; }
  var info = JSON.parse(data.textContent);
  var tip = document.getElementById("map-tip");
  var thumb = tip.querySelector(".thumb");
  var label = tip.querySelector(".label");
  var scale = 96 / info.tile;
  thumb.style.backgroundSize =
    (info.sheetWidth * scale) + "px " + (info.sheetHeight * scale) + "px";
  function show(ev, dot) {
    var i = parseInt(dot.getAttribute("data-i"), 10);
    var p = info.points[i];
    if (!p) { return; }
    if (info.hasSprite && p.tile < info.tiles) {
      var row = Math.floor(p.tile / info.columns), col = p.tile % info.columns;
      thumb.style.display = "block";
      thumb.style.backgroundPosition = (-col * info.tile * scale) + "px " +
        (-row * info.tile * scale) + "px";
    } else {
      thumb.style.display = "none";
    }
    label.textContent = "";
    var lines = [p.id, p.cluster < 0 ? "noise (no cluster)" : "cluster " + p.cluster];
    if (p.detail) { lines.push(p.detail); }
    lines.forEach(function (line, k) {
      var div = document.createElement("div");
      div.textContent = line;
      if (k === 0) { div.style.fontWeight = "600"; }
      label.appendChild(div);
    });
    var rect = wrap.getBoundingClientRect();
    var x = ev.clientX - rect.left + 14, y = ev.clientY - rect.top + 14;
    if (x + 270 > rect.width) { x = ev.clientX - rect.left - 270; }
    tip.style.left = Math.max(0, x) + "px";
    tip.style.top = Math.max(0, y) + "px";
    tip.classList.add("show");
  }
  on(wrap, "mouseover", "circle[data-i]", show);
  on(wrap, "mousemove", "circle[data-i]", show);
  on(wrap, "mouseout", "circle[data-i]", function () { tip.classList.remove("show"); });
  on(wrap, "click", "circle[data-i]", function (ev, dot) {
    var card = document.getElementById("cluster-" + dot.getAttribute("data-c"));
    if (card) { card.scrollIntoView({behavior: "smooth", block: "start"}); }
  });
})();
"""
