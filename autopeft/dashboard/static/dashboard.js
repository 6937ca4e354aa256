// autopeft dashboard: polls the JSON API and redraws tables and plots in place.
// Text from the database (study names, candidates, errors) is only ever set through
// textContent, never innerHTML, so it shows as text.
"use strict";
var autopeft = (function () {
  var POLL_MS = parseInt(document.body.dataset.pollMs || "1000", 10);

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function link(href, text) { var a = el("a", text); a.href = href; return a; }
  function num(x, digits) {
    if (x === null || x === undefined) return "-";
    if (typeof x !== "number") return String(x);
    return x.toFixed(digits === undefined ? 4 : digits);
  }
  function sci(x) { return (x === null || x === undefined) ? "-" : Number(x).toExponential(1); }
  function secs(s) {
    if (s === null || s === undefined) return "-";
    s = Math.round(s);
    return s >= 3600 ? Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m"
                     : Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  }
  function studyUrl(name) { return "/studies/" + encodeURIComponent(name); }
  function getJSON(url) {
    return fetch(url, {cache: "no-store"}).then(function (r) {
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        return body;
      });
    });
  }
  function loop(fn) {  // run fn, then again POLL_MS after it settles (no pile-up)
    function tick() { fn().catch(function (e) { console.error(e); }).then(function () {
      setTimeout(tick, POLL_MS); }); }
    tick();
  }
  function plot(id, traces, layout) {
    var base = {margin: {l: 55, r: 15, t: 40, b: 45}, height: 320, legend: {orientation: "h", y: -0.25}};
    layout = Object.assign(base, layout);
    ["xaxis", "yaxis"].forEach(function (a) { layout[a] = Object.assign({zeroline: false}, layout[a]); });
    layout.title = Object.assign({x: 0.02, xanchor: "left"}, layout.title);
    // no mode bar: it covers the titles; drag still zooms and a double click resets
    Plotly.react(id, traces, layout, {displayModeBar: false, responsive: true});
  }

  // -- studies ------------------------------------------------------------------------
  function studiesPage() {
    var body = document.querySelector("#studies tbody"), msg = document.getElementById("message");
    var last = null;
    loop(function () {
      return getJSON("/api/studies").then(function (data) {
        var sig = JSON.stringify(data);
        if (sig === last) return;  // unchanged: keep the rows as they are
        last = sig;
        msg.hidden = !data.message; msg.textContent = data.message || "";
        body.replaceChildren();
        data.studies.forEach(function (s) {
          var tr = el("tr"), name = el("td");
          name.appendChild(link(studyUrl(s.name), s.name));
          tr.appendChild(name);
          tr.appendChild(el("td", s.status, "state state-" + s.status));
          tr.appendChild(el("td", s.finished + " / " + (s.n_trials === null ? "?" : s.n_trials)));
          tr.appendChild(el("td", num(s.best_reward)));
          tr.appendChild(el("td", s.controller));
          tr.appendChild(el("td", s.model));
          tr.appendChild(el("td", new Date(s.created_at * 1000).toLocaleString()));
          body.appendChild(tr);
        });
      });
    });
  }

  // -- one study ----------------------------------------------------------------------
  var COLUMNS = [
    ["number", function (r, name) { var td = el("td"); td.appendChild(link(studyUrl(name) + "/trials/" + r.number, r.number)); return td; }],
    ["rank", function (r) { return el("td", r.rank === null ? "-" : r.rank); }],
    ["state", function (r) { return el("td", r.state, "state state-" + r.state); }],
    ["candidate", function (r) { var td = el("td", r.candidate, "candidate"); if (r.error) td.title = r.error; return td; }],
    ["learning_rate", function (r) { return el("td", sci(r.learning_rate)); }],
    ["metric", function (r) { return el("td", num(r.metric)); }],
    ["params_pct", function (r) { return el("td", num(r.params_pct, 3)); }],
    ["flops_pct", function (r) { return el("td", num(r.flops_pct, 2)); }],
    ["latency_pct", function (r) { return el("td", num(r.latency_pct, 1)); }],
    ["reward", function (r) { return el("td", num(r.reward)); }],
    ["feasible", function (r) { var td = el("td", r.feasible === null ? "-" : (r.feasible ? "yes" : "no")); if (r.reasons.length) td.title = r.reasons.join("; "); return td; }],
    ["duration", function (r) { return el("td", secs(r.duration)); }],
    ["worker", function (r) { return el("td", r.worker || "-"); }],
    ["recipe", function (r) { return el("td", r.recipe || "-"); }],
  ];

  function studyPage() {
    var name = document.body.dataset.study;
    var state = {sort: "rank", dir: 1, data: null, controlsSet: false, pending: null};
    var controls = ["lam", "max_params", "max_flops", "max_latency"];

    function query() {
      var q = "name=" + encodeURIComponent(name);
      if (state.data && state.data.version) q += "&since=" + state.data.version;
      if (state.controlsSet) controls.forEach(function (k) {
        q += "&" + k + "=" + encodeURIComponent(document.getElementById("ctl-" + k).value);
      });
      return "/api/study?" + q;
    }
    function refresh() { return getJSON(query()).then(render); }
    function setControls(values) {
      controls.forEach(function (k) {
        document.getElementById("ctl-" + k).value = values[k] === null ? "" : values[k];
      });
    }
    function render(data) {
      if (data.unchanged) {  // no new table yet: only the progress line is fresh
        if (data.study) renderProgress(data.study);
        return;
      }
      state.data = data;
      if (!state.controlsSet) { setControls(data.ranking.stored); state.controlsSet = true; }
      renderProgress(data.study);
      // redraw only what changed, so a page left open does not flicker or lose a selection
      var sig = JSON.stringify([data.trials, data.ranking]);
      if (sig !== state.tableSig) { state.tableSig = sig; renderRanking(data.ranking); renderTable(); }
      var psig = JSON.stringify(data.plots);
      if (psig !== state.plotSig) { state.plotSig = psig; renderPlots(data.plots); }
    }
    function renderProgress(s) {
      var c = s.counts, frac = s.progress === null ? 0 : s.progress;
      document.getElementById("progress-fill").style.width = (100 * frac).toFixed(1) + "%";
      document.getElementById("progress-text").textContent =
        s.status + " · " + s.finished + " / " + (s.n_trials === null ? "?" : s.n_trials) + " finished · " +
        c.complete + " complete, " + c.pruned + " pruned, " + c.failed + " failed, " +
        c.running + " running · best reward " + num(s.best_reward) + " · " + s.controller + " on " + s.model;
    }
    function renderRanking(rk) {
      var best = document.getElementById("best"), cmd = document.getElementById("export-command");
      var notes = document.getElementById("export-notes");
      if (rk.best) {
        best.replaceChildren(link(studyUrl(name) + "/trials/" + rk.best.number, "trial " + rk.best.number),
          document.createTextNode(" · reward " + num(rk.best.reward) + " · metric " + num(rk.best.metric) +
          " · params " + num(rk.best.params_pct, 3) + "% · " + rk.best.candidate));
        best.dataset.number = rk.best.number;
      } else {
        best.textContent = "no completed trial meets these limits";
        best.dataset.number = "";
      }
      cmd.textContent = rk.command || "-";
      notes.replaceChildren();
      rk.notes.forEach(function (n) { notes.appendChild(el("li", n)); });
    }
    function renderTable() {
      var rows = state.data.trials.slice();
      var text = document.getElementById("filter").value.toLowerCase();
      var only = document.getElementById("state-filter").value;
      rows = rows.filter(function (r) {
        if (only && r.state !== only) return false;
        if (!text) return true;
        return [r.candidate, r.state, r.worker, r.recipe, r.error, String(r.number)].join(" ").toLowerCase().indexOf(text) >= 0;
      });
      var key = state.sort, dir = state.dir;
      rows.sort(function (a, b) {
        var x = a[key], y = b[key];
        if (x === y) return a.number - b.number;
        if (x === null || x === undefined) return 1;   // missing values last, both ways
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * dir;
      });
      var body = document.querySelector("#trials tbody");
      body.replaceChildren();
      rows.forEach(function (r) {
        var tr = el("tr"); tr.dataset.number = r.number; tr.dataset.state = r.state;
        COLUMNS.forEach(function (c) { tr.appendChild(c[1](r, name)); });
        body.appendChild(tr);
      });
      document.getElementById("row-count").textContent = rows.length + " of " + state.data.trials.length + " trials";
      document.querySelectorAll("#trials th").forEach(function (th) {
        th.classList.toggle("sorted", th.dataset.key === key);
        th.dataset.dir = th.dataset.key === key ? (dir > 0 ? "asc" : "desc") : "";
      });
    }
    function renderPlots(p) {
      var r = p.reward, hover = r.number.map(function (n) { return "trial " + n; });
      plot("plot-best-trials", [
        {x: r.number, y: r.reward, mode: "markers", name: "trial reward", text: hover},
        {x: r.number, y: r.best, mode: "lines", line: {shape: "hv"}, name: "best so far"}],
        {title: {text: "Reward over trials"}, xaxis: {title: {text: "trial"}}, yaxis: {title: {text: "reward"}}});
      plot("plot-best-time", [
        {x: r.seconds, y: r.reward, mode: "markers", name: "trial reward", text: hover},
        {x: r.seconds, y: r.best, mode: "lines", line: {shape: "hv"}, name: "best so far"}],
        {title: {text: "Best so far over time"}, xaxis: {title: {text: "seconds since the first trial started"}}, yaxis: {title: {text: "reward"}}});
      var q = p.pareto, f = q.front;
      plot("plot-pareto", [
        {x: q.params_pct, y: q.metric, mode: "markers", name: "trials",
         text: q.number.map(function (n, i) { return "trial " + n + (q.feasible[i] ? "" : " (infeasible)"); }),
         marker: {symbol: q.feasible.map(function (ok) { return ok ? "circle" : "circle-open"; })}},
        {x: f.map(function (i) { return q.params_pct[i]; }), y: f.map(function (i) { return q.metric[i]; }),
         mode: "lines+markers", name: "Pareto front", text: f.map(function (i) { return "trial " + q.number[i]; })}],
        {title: {text: "Metric vs trainable parameters"}, xaxis: {title: {text: "trainable parameters (% of base)"}, type: "log"},
         yaxis: {title: {text: "validation " + q.metric_name}}});
      var curves = p.curves.map(function (c) {
        return {x: c.step, y: c.value, mode: "lines+markers", name: "trial " + c.number + (c.pruned ? " (pruned)" : ""),
                line: {dash: c.pruned ? "dot" : "solid", width: 1},
                marker: {size: c.value.map(function (_, i) { return c.pruned && i === c.value.length - 1 ? 10 : 3; }),
                         symbol: c.value.map(function (_, i) { return c.pruned && i === c.value.length - 1 ? "x" : "circle"; })}};
      });
      plot("plot-curves", curves, {title: {text: "Validation curves (pruned: dotted, ×)"}, showlegend: curves.length <= 12,
           xaxis: {title: {text: "step"}}, yaxis: {title: {text: "validation metric"}}});
      var imp = Object.entries(p.importance).slice(0, 15).reverse();
      plot("plot-importance", [{type: "bar", orientation: "h", x: imp.map(function (e) { return e[1]; }),
                                y: imp.map(function (e) { return e[0]; })}],
           {title: {text: "Which choices matter (η²)"}, margin: {l: 160, r: 15, t: 40, b: 45}, xaxis: {range: [0, 1]},
            annotations: imp.length ? [] : [{text: "needs scored trials that differ in a decision", showarrow: false,
                                             xref: "paper", yref: "paper", x: 0.5, y: 0.5}],
            yaxis: {visible: imp.length > 0}});
    }

    document.querySelectorAll("#trials th").forEach(function (th) {
      th.addEventListener("click", function () {
        if (state.sort === th.dataset.key) state.dir = -state.dir; else { state.sort = th.dataset.key; state.dir = 1; }
        if (state.data) renderTable();
      });
    });
    ["filter", "state-filter"].forEach(function (id) {
      document.getElementById(id).addEventListener("input", function () { if (state.data) renderTable(); });
    });
    controls.forEach(function (k) {
      document.getElementById("ctl-" + k).addEventListener("input", function () {
        clearTimeout(state.pending);
        state.pending = setTimeout(refresh, 150);
      });
    });
    document.getElementById("ctl-reset").addEventListener("click", function () {
      if (state.data) { setControls(state.data.ranking.stored); refresh(); }
    });
    loop(refresh);
  }

  // -- one trial ----------------------------------------------------------------------
  function trialPage() {
    var curve = JSON.parse(document.getElementById("curve-data").textContent);
    plot("plot-curve", curve.map(function (c) {
      return {x: c.step, y: c.value, mode: "lines+markers", name: "trial " + c.number + (c.pruned ? " (pruned)" : ""),
              line: {dash: c.pruned ? "dot" : "solid"}};
    }), {title: {text: "Validation curve"}, xaxis: {title: {text: "step"}}, yaxis: {title: {text: "validation metric"}}});
    var st = document.body.dataset.state;
    if (st === "running" || st === "pending") setTimeout(function () { location.reload(); }, Math.max(POLL_MS, 2000));
  }

  return {studiesPage: studiesPage, studyPage: studyPage, trialPage: trialPage};
})();
if (document.body.dataset.page === "studies") autopeft.studiesPage();
