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
