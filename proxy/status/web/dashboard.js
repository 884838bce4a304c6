// pkgswarm dashboard: polls /_pkgswarm/status every 2 s and redraws the
// figures, tables and chart that the server rendered first. Vanilla
// JavaScript, no dependencies. Everything from the status document is
// inserted as text (URLs and reasons come from the network).
(function () {
  "use strict";
  var POLL_MS = 2000, KEEP_MS = 3600 * 1000;
  var SOURCES = ["cache", "lan", "swarm", "origin"];
  var COLORS = { cache: "#2e7d32", lan: "#1565c0", swarm: "#6a1b9a", origin: "#ef6c00" };
  // Chart geometry: the same as chartSVG in proxy/dashboard.go.
  var W = 720, H = 180, PADL = 64, PADB = 22, PADT = 8, PADR = 8, MIN_SPAN = 60, TICKS = 4, MIN_RATE = 1024;
  var SVGNS = "http://www.w3.org/2000/svg";

  var history = [];
  try {
    history = JSON.parse(document.getElementById("history").textContent) || [];
  } catch (e) { history = []; }
  // The server keeps 720 points (an hour); until then the chart spans the
  // node's uptime, and says so.
  var trimmed = history.length >= 720;

  // fixed1 formats like Go's %.1f: exact decimal rounding, ties to even.
  // A double is exactly halfway between two one-decimal values only when
  // its fraction is .25 or .75 (x*4 is exact), where toFixed would round up.
  function fixed1(x) {
    if (Number.isInteger(x * 4) && !Number.isInteger(x * 2)) {
      var k = Math.floor(x * 10);
      return ((k % 2 === 0 ? k : k + 1) / 10).toFixed(1);
    }
    return x.toFixed(1);
  }
  // formatBytes matches proxy.FormatBytes.
  function formatBytes(n) {
    if (n < 1024) return n + " B";
    var div = 1024, exp = 0;
    for (var m = Math.floor(n / 1024); m >= 1024 && exp < 5; m = Math.floor(m / 1024)) { div *= 1024; exp++; }
    return fixed1(n / div) + " " + "KMGTPE".charAt(exp) + "iB";
  }
  function formatAge(sec) {
    if (sec < 0) return "in the future";
    sec = Math.floor(sec);
    if (sec < 60) return sec + " s";
    if (sec < 3600) return Math.floor(sec / 60) + " min";
    if (sec < 86400) return Math.floor(sec / 3600) + " h " + Math.floor(sec % 3600 / 60) + " min";
    return Math.floor(sec / 86400) + " d " + Math.floor(sec % 86400 / 3600) + " h";
  }
  function utc(t) {
    var d = new Date(t);
    if (isNaN(d)) return "";
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }
  function isZeroTime(t) { return !t || t.indexOf("0001-01-01") === 0; }
  function short(s) { s = s || ""; return s.length > 16 ? s.slice(0, 16) + "…" : s; }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function badge(kind, text, title) {
    var b = el("span", { "class": "badge " + kind }, text);
    if (title) b.title = title;
    return b;
  }
  function progress(pct) {
    var p = el("progress");
    if (pct >= 0) { p.max = 100; p.value = pct; }
    return p;
  }
  function fillTable(id, rows, emptyText, cols) {
    var body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    body.textContent = "";
    if (rows.length === 0) {
      var tr = el("tr", { "class": "empty" });
      tr.appendChild(el("td", { colspan: String(cols) }, emptyText));
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function setStat(name, value, text) {
    document.querySelectorAll('[data-stat="' + name + '"]').forEach(function (e) {
      if (value !== null) e.setAttribute("data-value", String(value));
      e.textContent = text;
    });
  }
  function setCount(name, n) {
    var e = document.querySelector('[data-count="' + name + '"]');
    if (e) e.textContent = String(n);
  }

  function sourceOrder(served) {
    var out = SOURCES.slice(), extra = [];
    for (var k in served) if (out.indexOf(k) < 0) extra.push(k);
    return out.concat(extra.sort());
  }
  // peerField reads a peer by field name, case-insensitively, ignoring
  // underscores (the Go side does the same).
  function peerField(p, name) {
    for (var k in p) if (k.toLowerCase().replace(/_/g, "") === name) return p[k];
    return undefined;
  }

  function render(st) {
    var now = new Date(st.time).getTime() / 1000;
    var hits = st.requests.hit || 0, misses = st.requests.miss || 0;
    setStat("hit_ratio", st.hit_ratio, fixed1(100 * st.hit_ratio) + " %");
    setStat("requests.hit", hits, String(hits));
    setStat("requests.miss", misses, String(misses));
    setStat("node_id", null, st.node_id);
    setStat("pkgswarm_version", null, st.pkgswarm_version);
    setStat("time", null, utc(st.time));
    var names = sourceOrder(st.served_bytes), total = 0, saved = 0;
    names.forEach(function (n) { var b = st.served_bytes[n] || 0; total += b; if (n !== "origin") saved += b; });
    setStat("served_total", total, formatBytes(total));
    setStat("saved", saved, formatBytes(saved));
    setStat("origin.bytes", st.origin.bytes, formatBytes(st.origin.bytes));
    setStat("origin.requests", st.origin.requests, String(st.origin.requests));
    setStat("origin.errors", st.origin.errors, String(st.origin.errors));
    setStat("store.bytes", st.store.bytes, formatBytes(st.store.bytes));
    setStat("store.blobs", st.store.blobs, String(st.store.blobs));
    if (st.store.max_bytes) setStat("store.max_bytes", st.store.max_bytes, formatBytes(st.store.max_bytes));

    fillTable("sources", names.map(function (n) {
      var b = st.served_bytes[n] || 0, pct = total > 0 ? 100 * b / total : 0;
      var tr = el("tr", { "data-source": n });
      var th = el("th");
      th.appendChild(el("span", { "class": "dot", "data-color": n }));
      th.appendChild(document.createTextNode(n));
      tr.appendChild(th);
      tr.appendChild(el("td", { "class": "num", "data-stat": "served." + n, "data-value": String(b) }, formatBytes(b)));
      var bar = el("td", { "class": "bar" }); bar.appendChild(progress(Number(fixed1(pct)))); tr.appendChild(bar);
      tr.appendChild(el("td", { "class": "num pct" }, fixed1(pct) + " %"));
      return tr;
    }), "", 4);

    var transfers = (st.transfers || []).slice().sort(function (a, b) { return new Date(a.started) - new Date(b.started); });
    setCount("transfers", transfers.length);
    fillTable("transfers", transfers.map(function (t) {
      var tr = el("tr", { "data-url": t.url });
      tr.appendChild(el("td", { "class": "url" }, t.url));
      tr.appendChild(el("td", {}, t.source));
      tr.appendChild(el("td", { "class": "num", "data-value": String(t.bytes) }, formatBytes(t.bytes) + (t.size > 0 ? " / " + formatBytes(t.size) : "")));
      var bar = el("td", { "class": "bar" });
      bar.appendChild(progress(t.size > 0 ? Math.min(100, 100 * t.bytes / t.size) : -1));
      tr.appendChild(bar);
      return tr;
    }), "No download in progress.", 4);

    var peers = Array.isArray(st.peers) ? st.peers : [];
    setCount("peers", peers.length);
    fillTable("peers", peers.map(function (p) {
      var id = String(peerField(p, "id") || ""), healthy = !!peerField(p, "healthy");
      var addrs = peerField(p, "addrs"), seen = peerField(p, "lastseen");
      var tr = el("tr", { "data-id": id });
      var h = el("td"); h.appendChild(healthy ? badge("ok", "healthy") : badge("bad", "unhealthy")); tr.appendChild(h);
      var c = el("td"); var code = el("code", { title: id }, short(id)); c.appendChild(code); tr.appendChild(c);
      tr.appendChild(el("td", { "class": "url" }, String(peerField(p, "url") || "")));
      tr.appendChild(el("td", {}, Array.isArray(addrs) ? addrs.join(", ") : ""));
      tr.appendChild(el("td", {}, String(peerField(p, "source") || "")));
      tr.appendChild(el("td", {}, isZeroTime(seen) ? "—" : formatAge(now - new Date(seen).getTime() / 1000) + " ago"));
      tr.appendChild(el("td", { "class": "num" }, String(peerField(p, "failures") || 0)));
      return tr;
    }), "No LAN peer found (mDNS or --peer).", 7);

    // freshness matches rootFreshness in dashboard.go: a root signed long
    // ago is no alarm unless its Valid-Until has passed.
    function freshness(r) {
      if (isZeroTime(r.date)) return { text: "", expired: false };
      var date = new Date(r.date).getTime() / 1000;
      if (isZeroTime(r.valid_until)) return { text: "signed " + formatAge(now - date) + " ago, no expiry", expired: false };
      var until = new Date(r.valid_until).getTime() / 1000;
      if (now > until) return { text: "expired " + formatAge(now - until) + " ago", expired: true };
      return { text: "valid " + formatAge(until - now) + " more", expired: false };
    }
    var repos = st.repositories || [];
    setCount("repositories", repos.length);
    fillTable("repositories", repos.map(function (r) {
      var tr = el("tr", { "data-repo": r.repo });
      var b = el("td"); b.appendChild(r.trusted ? badge("ok", "verified") : badge("warn", "untrusted", r.note)); tr.appendChild(b);
      tr.appendChild(el("td", { "class": "url", title: r.url }, r.repo));
      tr.appendChild(el("td", {}, isZeroTime(r.date) ? "" : utc(r.date)));
      var f = freshness(r), age = el("td", { "data-age": "" });
      age.appendChild(f.expired ? badge("warn", f.text) : el("span", { "class": "muted" }, f.text));
      tr.appendChild(age);
      tr.appendChild(el("td", { "class": "signer" }, r.signer || ""));
      return tr;
    }), "No repository root seen yet: point apt, urpmi or dnf at this node.", 5);

    var fails = (st.verification_failures || []).slice().reverse();
    setCount("verification_failures", fails.length);
    fillTable("failures", fails.map(function (f) {
      var tr = el("tr", { "data-url": f.url });
      tr.appendChild(el("td", { "class": "when" }, utc(f.time)));
      tr.appendChild(el("td", { "class": "url" }, f.url));
      tr.appendChild(el("td", { "class": "url src" }, f.sources));
      tr.appendChild(el("td", { "class": "reason" }, f.reason));
      return tr;
    }), "None: every byte served so far matched its signed metadata.", 4);

    history.push({ t: st.time, served: st.served_bytes, origin: st.origin.bytes, hits: hits, misses: misses });
    var cutoff = new Date(st.time).getTime() - KEEP_MS;
    while (history.length > 2 && new Date(history[0].t).getTime() < cutoff) { history.shift(); trimmed = true; }
    drawChart();
  }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  // drawChart plots bytes/s served per source between consecutive samples.
  function drawChart() {
    var box = document.getElementById("chart-box");
    if (!box || history.length < 2) return;
    var root = svg("svg", { id: "chart", viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "bytes per second served, by source" });
    var t1 = new Date(history[history.length - 1].t).getTime() / 1000;
    var t0 = Math.min(new Date(history[0].t).getTime() / 1000, t1 - MIN_SPAN);
    var span = t1 - t0, names = sourceOrder(history[history.length - 1].served);
    var series = {}, maxRate = MIN_RATE;
    for (var i = 1; i < history.length; i++) {
      var a = history[i - 1], b = history[i];
      var dt = (new Date(b.t) - new Date(a.t)) / 1000;
      if (dt <= 0) continue;
      names.forEach(function (n) {
        var rate = Math.max(0, ((b.served[n] || 0) - (a.served[n] || 0)) / dt);
        // The server's points carry the fastest second of their interval.
        if (b.peak && b.peak[n] !== undefined) rate = Math.max(rate, b.peak[n]);
        maxRate = Math.max(maxRate, rate);
        (series[n] = series[n] || []).push([new Date(b.t).getTime() / 1000 - t0, rate]);
      });
    }
    var plotW = W - PADL - PADR, plotH = H - PADT - PADB;
    for (var k = 0; k <= TICKS; k++) {
      var y = PADT + plotH * k / TICKS;
      root.appendChild(svg("line", { "class": "grid", x1: PADL, x2: W - PADR, y1: y.toFixed(1), y2: y.toFixed(1) }));
      root.appendChild(svg("text", { "class": "axis", x: PADL - 6, y: (y + 4).toFixed(1), "text-anchor": "end" },
        formatBytes(Math.floor(maxRate * (TICKS - k) / TICKS)) + "/s"));
    }
    root.appendChild(svg("text", { "class": "axis", x: PADL, y: H - 4 }, "-" + formatAge(span)));
    root.appendChild(svg("text", { "class": "axis", x: W - PADR, y: H - 4, "text-anchor": "end" }, "now"));
    names.forEach(function (n) {
      var pts = series[n];
      if (!pts || pts.length === 0) return;
      var d = pts.map(function (p, j) {
        return (j === 0 ? "M" : "L") + (PADL + plotW * p[0] / span).toFixed(1) + " " + (PADT + plotH * (1 - p[1] / maxRate)).toFixed(1);
      }).join(" ");
      root.appendChild(svg("path", { "class": "series", "data-source": n, fill: "none", stroke: COLORS[n] || "#555", "stroke-width": "2", d: d }));
    });
    box.textContent = "";
    box.appendChild(root);
    var label = document.getElementById("chart-span");
    var kept = t1 - new Date(history[0].t).getTime() / 1000;
    if (label) label.textContent = (trimmed ? "last " : "since the node started ") + formatAge(kept) + (trimmed ? "" : " ago");
  }

  function poll() {
    fetch("/_pkgswarm/status", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("status " + r.status);
        return r.json();
      })
      .then(function (st) { render(st); document.body.setAttribute("data-live", "ok"); })
      .catch(function () { document.body.setAttribute("data-live", "error"); })
      .then(function () { setTimeout(poll, POLL_MS); });
  }
  poll();
})();
