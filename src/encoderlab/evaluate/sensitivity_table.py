"""``sensitivity.md``: per factor, which encoder is more sensitive and whether it is significant.

The CLIP vs DINO comparison (the paper's claim) comes first and in bold when both are present.
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_highlight", "sensitivity_markdown"]


def is_highlight(a: str, b: str) -> bool:
    """The pair the study is about: a CLIP-like encoder against a DINO-like one."""
    names = {a.lower(), b.lower()}
    return any(n.startswith("clip") for n in names) and any("dino" in n for n in names)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _ci(e: dict[str, Any]) -> str:
    return f"{_num(e['value'])} [{_num(e['low'])}, {_num(e['high'])}]"


def _p(p: float | None, n_boot: int) -> str:
    # A bootstrap of n_boot resamples cannot resolve p below 1 / n_boot.
    return "n/a" if p is None else f"p<{1 / n_boot:.3g}" if p < 1 / n_boot else f"p≈{p:.3f}"


def _comparison(comp: dict[str, Any], per: dict[str, Any], bold: bool, n_boot: int) -> list[str]:
    a, b = comp["a"], comp["b"]
    title = f"{a} vs {b}"
    lines = [f"## {'**' + title + '**' if bold else title}", ""]
    lines.append(f"| factor | {a} | {b} | {a} − {b} [CI] | more sensitive | significant |")
    lines.append("|---|---|---|---|---|---|")
    for factor, d in comp["factors"].items():
        sa, sb = per[a]["factors"][factor]["value"], per[b]["factors"][factor]["value"]
        value = d["value"] or 0.0
        winner = a if value > 0 else b if value < 0 else "—"
        sig = f"yes ({_p(d['p'], n_boot)})" if d["significant"] else "no"
        mark = "**" if d["significant"] else ""
        lines.append(
            f"| {factor} | {_num(sa)} | {_num(sb)} | {_ci(d)} | {mark}{winner}{mark} | {sig} |"
        )
    lines.append("")
    return lines


def sensitivity_markdown(result: dict[str, Any]) -> str:
    """Markdown tables from an ``analyze`` result."""
    sens = result.get("sensitivity", {})
    lines = ["# Counterfactual sensitivity", ""]
    if "encoders" not in sens:
        lines.append(f"Not measured: {sens.get('skipped', 'no SynthWorld data')}.")
        return "\n".join(lines) + "\n"
    level = round(result["config"]["level"] * 100)
    lines += [
        f"{sens['scenes']} held-out SynthWorld object scenes (split `{sens['split']}`), one "
        "variant per factor that changes that factor only. Sensitivity = mean(1 − cos(original, "
        "variant)) / mean(1 − cos(original, random other scene)) on L2-normalised embeddings: "
        f"1.0 = as different as two random images, 0 = invariant. {level}% percentile-bootstrap "
        "CIs over scenes; differences use a paired bootstrap (the same resampled scenes for both "
        "encoders) and are significant when their CI excludes 0.",
        "",
        "## Sensitivity per encoder",
        "",
    ]
    per = sens["encoders"]
    names = list(per)
    lines.append("| factor | scenes | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    for factor in sens["factors"]:
        n = per[names[0]]["factors"][factor]["n"]
        cells = " | ".join(_ci(per[name]["factors"][factor]) for name in names)
        lines.append(f"| {factor} | {n} | {cells} |")
    lines.append("")
    comps = sorted(sens["comparisons"], key=lambda c: not is_highlight(c["a"], c["b"]))
    for comp in comps:
        bold = is_highlight(comp["a"], comp["b"])
        lines += _comparison(comp, per, bold, result["config"]["n_boot"])
    return "\n".join(lines) + "\n"
