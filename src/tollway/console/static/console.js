/* Tollway console: charts (uPlot) and copy buttons. Pages work without this file; it only adds. */
(function () {
  "use strict";
  var COLORS = ["#1d4ed8", "#b91c1c", "#15803d", "#a16207", "#7c3aed", "#0e7490"];

  function utc(ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); }

  function drawChart(box) {
    var source = document.querySelector('script[data-chart-for="' + box.id + '"]');
    if (!source || box.getAttribute("data-drawn")) { return; }
    var spec;
    try { spec = JSON.parse(source.textContent); } catch (e) { return; }
    box.setAttribute("data-drawn", "1");
    if (!spec.x || spec.x.length === 0) {
      box.textContent = "No requests in this period.";
      box.className += " empty";
      return;
    }
    if (typeof uPlot === "undefined") { return; }
    var bars = box.getAttribute("data-chart") === "bars";
    var series = [{ label: spec.xLabel || "Time" }];
    spec.series.forEach(function (s, i) {
      var color = COLORS[i % COLORS.length];
      var one = { label: s.label, stroke: color, width: 2, scale: s.scale || "y", points: { show: spec.x.length < 40 } };
      if (bars) {
        one.fill = color + "33";
        one.paths = uPlot.paths.bars({ size: [0.7, 48] });
        one.points = { show: false };
      }
      series.push(one);
    });
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var axes = [{ stroke: "#4f5864", grid: { stroke: "#e5e7eb" } },
                { stroke: "#4f5864", grid: { stroke: "#e5e7eb" }, size: 64, scale: "y" }];
    var scales = { x: { time: spec.time !== false }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } };
    if (spec.series.some(function (s) { return s.scale === "y2"; })) {
      axes.push({ side: 1, scale: "y2", stroke: "#4f5864", grid: { show: false }, size: 64 });
      scales.y2 = { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } };
    }
    var width = function () { return Math.max(260, box.clientWidth || 260); };
    var plot = new uPlot({ width: width(), height: 220, series: series, axes: axes, scales: scales, tzDate: utc }, data, box);
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(function () { plot.setSize({ width: width(), height: 220 }); }).observe(box);
    }
  }

  function drawCharts(root) {
    var boxes = (root || document).querySelectorAll ? (root || document).querySelectorAll("[data-chart]") : [];
    for (var i = 0; i < boxes.length; i++) { drawChart(boxes[i]); }
  }

  function copyText(text, button) {
    var done = function () {
      var old = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = old; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }

  // a table wider than the screen scrolls sideways: keyboard users reach it with Tab
  function markScrollers() {
    var wraps = document.querySelectorAll(".table-wrap");
    for (var i = 0; i < wraps.length; i++) {
      if (wraps[i].scrollWidth > wraps[i].clientWidth + 1) {
        wraps[i].setAttribute("tabindex", "0");
      } else if (wraps[i].getAttribute("tabindex") === "0") {
        wraps[i].removeAttribute("tabindex");
      }
    }
  }

  // phones: the navigation is a row that scrolls sideways; bring the current page's entry into view
  function showCurrentNav() {
    var nav = document.querySelector(".sidenav");
    var current = nav ? nav.querySelector('a[aria-current="page"]') : null;
    if (!current || nav.scrollWidth <= nav.clientWidth + 1) { return; }
    var outer = nav.getBoundingClientRect();
    var box = current.getBoundingClientRect();
    if (box.left < outer.left || box.right > outer.right) {
      nav.scrollLeft += box.left - outer.left - (outer.width - box.width) / 2;
    }
  }

  function ready(root) {
    var copies = document.querySelectorAll("[data-copy]");
    for (var i = 0; i < copies.length; i++) { copies[i].hidden = false; }
    drawCharts(root);
    markScrollers();
    showCurrentNav();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) { return; }
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (target) { copyText(target.textContent.trim(), button); }
  });
  document.addEventListener("DOMContentLoaded", function () { ready(document); });
  document.addEventListener("htmx:load", function (event) {
    ready(event.detail && event.detail.elt ? event.detail.elt : document);
  });
  window.addEventListener("resize", function () { markScrollers(); showCurrentNav(); });
})();
