"""What people would rather see than read: plots and one HTML page for a study.

- reward over trials (each trial, and the best so far),
- accuracy vs trainable parameters with the Pareto front drawn,
- per-decision importance: which choices matter.

The series come from autopeft.plots, which the dashboard draws from too; this module
only renders them with matplotlib.
"""
from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from autopeft.plots import decision_importance, pareto_series, reward_series, scored_trials
from autopeft.records import TrialRecord, task_names

__all__ = ["decision_importance", "pareto_front", "write_report"]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (cost lower, metric higher), by cost."""
    from autopeft.pareto import front

    return sorted(front([(m, c) for c, m in points]), key=lambda i: points[i][0])


def write_report(trials: list[TrialRecord], out_dir: str | Path, *, title: str,
                 calibration: Any = ()) -> list[Path]:
    """Write reward.png, pareto.png, importance.png and report.html; return their paths.

    calibration: autopeft.calibrate records, shown in their own table (never plotted or
    ranked with the proxy trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scored = scored_trials(trials)
    paths: list[Path] = []

    fig, ax = plt.subplots(figsize=(7, 4))
    series = reward_series(trials)
    ax.scatter(series["number"], series["reward"], s=18, label="trial reward")
    ax.step(series["number"], series["best"], where="post", color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("reward")
    ax.set_title("Reward over trials")
    ax.legend()
    paths.append(_save(fig, out / "reward.png", plt))

    fig, ax = plt.subplots(figsize=(7, 4))
    par = pareto_series(trials)
    pts = list(zip(par["params_pct"], par["metric"]))
    front = par["front"]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, label="trials")
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "o-", color="C3",
            label="Pareto front")
    for i in front:
        ax.annotate(f"#{par['number'][i]}", pts[i], fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("trainable parameters (% of base model)")
    ax.set_ylabel(f"validation {par['metric_name']}")
    ax.set_title("Accuracy vs trainable parameters")
    ax.legend()
    paths.append(_save(fig, out / "pareto.png", plt))

    imp = decision_importance(trials)
    top = list(imp.items())[:15]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(top) + 1)))
    ax.barh([k for k, _ in reversed(top)], [v for _, v in reversed(top)])
    ax.set_xlabel("share of reward variance explained (eta²)")
    ax.set_title("Which choices matter")
    paths.append(_save(fig, out / "importance.png", plt))

    page = out / "report.html"
    body = _html(title, trials, paths, imp, front, scored)
    body = body.replace("</body>", _calibration_html(calibration) + "</body>")
    page.write_text(body, encoding="utf-8")
    paths.append(page)
    return paths


def _calibration_html(records: Any) -> str:
    """The full-fidelity retrainings of `autopeft calibrate`, apart from the trials."""
    if not records:
        return ""
    from autopeft.candidate import Candidate

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4f}"

    rows = "".join(
        f"<tr><td>{r.proxy_trial}</td><td>{r.status}</td><td>{num(r.proxy_metric)}</td>"
        f"<td>{num(r.metrics.metric if r.metrics else None)}</td>"
        f"<td>{num(r.metrics.test_metric if r.metrics else None)}</td>"
        f"<td>{html.escape(Candidate.from_dict(r.candidate).summary())}</td></tr>"
        for r in records)
    return ("<h2>Full-fidelity calibration</h2><table><tr><th>proxy trial</th><th>status"
            "</th><th>proxy val</th><th>full val</th><th>full test</th><th>candidate</th>"
            f"</tr>{rows}</table>")


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def _html(title: str, trials: list[TrialRecord], images: list[Path], imp: dict[str, float],
          front: list[int], scored: list[TrialRecord]) -> str:
    from autopeft.candidate import Candidate

    tasks = task_names([scored[i] for i in front])  # a multi-task study: a column each
    imgs = "".join(
        f'<img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"/>' for p in images)
    rows = []
    for i in front:
        t = scored[i]
        rows.append(
            f"<tr><td>{t.number}</td><td>{t.metrics.metric:.4f}</td>"
            f"<td>{100 * t.metrics.cost.params_ratio:.3f}</td><td>{t.reward:.4f}</td>"
            + "".join(f"<td>{_num(t.metrics.task_scores.get(n))}</td>" for n in tasks)
            + f"<td>{html.escape(Candidate.from_dict(t.candidate).summary())}</td></tr>")
    imp_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>"
                       for k, v in imp.items())
    states: dict[str, int] = defaultdict(int)
    for t in trials:
        states[t.state.value] += 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
    buf = io.StringIO()
    buf.write(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
              "</title><style>body{font-family:sans-serif;max-width:960px;margin:auto}"
              "img{max-width:100%;display:block;margin:1em 0}table{border-collapse:collapse}"
              "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style></head><body>")
    buf.write(f"<h1>{html.escape(title)}</h1><p>{len(trials)} trials: {summary}</p>{imgs}")
    task_heads = "".join(f"<th>{html.escape(n)}</th>" for n in tasks)
    buf.write("<h2>Pareto front</h2>" + ("<p>metric: the weighted mean of the tasks' "
                                         "validation metrics</p>" if tasks else "")
              + "<table><tr><th>trial</th><th>metric</th><th>params %</th>"
              f"<th>reward</th>{task_heads}<th>candidate</th></tr>{''.join(rows)}</table>")
    buf.write("<h2>Decision importance</h2><table><tr><th>decision</th><th>eta²</th></tr>"
              f"{imp_rows}</table></body></html>")
    return buf.getvalue()
