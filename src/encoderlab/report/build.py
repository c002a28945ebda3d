"""``build_report``: a study directory in; ``report.html`` (self-contained), ``report.md`` out."""

from __future__ import annotations

from pathlib import Path

from encoderlab.report.findings import VIEW_TITLES, all_findings
from encoderlab.report.html import render_html
from encoderlab.report.load import StudyResults, load_study_results
from encoderlab.report.markdown import render_markdown
from encoderlab.report.plots import plot_control, plot_curves, plot_losses, plot_vlm_categories
from encoderlab.report.replicates import load_replicates, pool
from encoderlab.report.sections import build_document

__all__ = ["build_report"]


def _figures(res: StudyResults, out: Path) -> dict[str, Path]:
    """The report's own plots, for whatever the study has produced so far."""
    figures: dict[str, Path] = {}
    if res.control is not None and res.control.get("encoders"):
        figures["control"] = plot_control(res.control, out / "control.png")
    if res.curves is not None and res.curves.get("encoders"):
        figures["curves"] = plot_curves(res.curves, out / "curves.png")
    if res.losses:
        figures["losses"] = plot_losses(res.losses, out / "losses.png")
    for view, title in VIEW_TITLES.items():
        if any(r["categories"].get(view) for r in res.suite.values()):
            path = out / f"vlm_{view}.png"
            figures[view] = plot_vlm_categories(
                res.suite, view, f"VLM score by {title} category (95% CI)", path
            )
    return figures


def build_report(study_dir: Path, out_dir: Path | None = None) -> Path:
    """Write ``report.html`` and ``report.md`` (and their figures under ``figures/``) to
    ``out_dir`` (default ``study_dir/report``); return the path of ``report.html``.

    Works on a partial study: what has not run is reported as such. The findings pool the
    study's replicates (``replicate<i>/``) if it has any; tables and plots show replicate 0.
    Deterministic: the same study directory gives the same bytes.
    """
    res = load_study_results(study_dir)
    out = Path(out_dir) if out_dir is not None else Path(study_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    pooled = pool([res, *load_replicates(res.root)])
    findings = all_findings(
        pooled.control, pooled.analysis, pooled.vs_clip, pooled.sanity, res.planned_vlms
    )
    doc = build_document(res, findings, _figures(res, out / "figures"), pooled.replicates)
    (out / "report.md").write_text(render_markdown(doc, out))
    html = out / "report.html"
    html.write_text(render_html(doc))
    return html
