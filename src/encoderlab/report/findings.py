"""The paper's claims, each checked against this run's numbers.

Pure functions of the loaded JSON (``control.json``, ``analysis.json`` and the paired VLM
comparisons of ``encoderlab.suite.compare``), so every verdict can be unit-tested on constructed
inputs. A verdict rests on confidence intervals, never on a point estimate alone (except the
control check when ``control.json`` has no paired CI, which the finding says):

- supported: the interval lies on the side the paper predicts;
- contradicted: it lies entirely on the other side;
- not resolved: it straddles the boundary (0, or the control's tolerance);
- not run: a stage the claim needs has not produced its numbers.

A claim is also "not resolved" when its premise fails, whatever its interval says: matched
classification means nothing if the control is not powered (an encoder short of the
chance-corrected accuracy bar of ``evaluate.power``, whose thresholds ``control.json``
records), and a VLM comparison means nothing if a VLM answers no better with its image than
with a blank one. The embedding findings keep their verdicts when the control is not powered,
with a note: the accuracy-matched comparison (``accuracy_matched_findings``) is the check.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from encoderlab.evaluate.power import (
    POWER_KNN,
    POWER_LINEAR,
    gap_matched,
    power_check,
    power_note,
)

__all__ = [
    "LOW_LEVEL_FACTORS",
    "SEMANTIC_FACTORS",
    "VIEW_TITLES",
    "Finding",
    "Number",
    "accuracy_matched_findings",
    "all_findings",
    "control_power",
    "matched_classification",
    "no_gain",
    "ocr_advantage",
    "sensitivity_findings",
    "vision_centric",
]

Verdict = Literal["supported", "contradicted", "not resolved", "not run"]

SEMANTIC_FACTORS = ("category", "text")  # the paper: CLIP is more sensitive to these
LOW_LEVEL_FACTORS = ("colour", "style")  # ... and DINO to these
FACTOR_WORDS = {"category": "object category", "text": "embedded text"}
_NEEDS = "needs the paired comparison of the clip and {} VLMs (suite results with per_item.csv)"
VIEW_TITLES = {"vmc": "VMCBench", "cambrian": "Cambrian-1"}
VARIANT_WORDS = {
    "siglip": "the sigmoid (SigLIP) loss",
    "clip-pretrained-text": "a pretrained text encoder",
}


@dataclass(frozen=True)
class Number:
    """One number a verdict rests on, with its interval (``None``: not available)."""

    label: str
    value: float | None
    low: float | None = None
    high: float | None = None
    unit: str = ""
    digits: int = 1

    def text(self) -> str:
        def f(x: float | None) -> str:
            return "n/a" if x is None else f"{x:+.{self.digits}f}"

        ci = f" [{f(self.low)}, {f(self.high)}]" if self.low is not None else ""
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.label}: {f(self.value)}{ci}{unit}"


@dataclass(frozen=True)
class Finding:
    """A claim of the paper, what this run says about it, and why."""

    topic: str
    claim: str
    verdict: Verdict
    rule: str
    numbers: tuple[Number, ...] = ()
    note: str = ""


def _side(low: float, high: float, boundary: float = 0.0) -> int:
    """+1: interval entirely above ``boundary``; -1: entirely below; 0: it includes it."""
    return 1 if low > boundary else -1 if high < boundary else 0


def _has_ci(d: Mapping[str, Any] | None) -> bool:
    return d is not None and all(d.get(k) is not None for k in ("value", "low", "high"))


# -- control -------------------------------------------------------------------------------
def matched_classification(control: Mapping[str, Any] | None) -> Finding:
    """CLIP and DINO reach the same linear-probe category accuracy, within the study's
    tolerance. With a paired CI: supported when it lies inside +-tolerance, contradicted when
    it lies entirely outside, else not resolved. Not resolved, whatever the CI, when the
    control is not powered (``control_power``); the note then gives the figures."""
    topic = "Control"
    if control is None or "clip_minus_dino_linear_points" not in control:
        missing = "control.json" if control is None else "a clip and a dino encoder in control.json"
        claim = "CLIP and DINO classify the world's objects equally well (linear probe)."
        return Finding(topic, claim, "not run", "", note=f"needs {missing}")
    tol = float(control["max_gap_points"])
    claim = (
        f"CLIP and DINO classify the world's objects equally well: linear-probe category "
        f"accuracy within ±{tol:g} points."
    )
    power = control_power(control)
    weak = power_note(power) if power else ""
    paired = (control.get("paired") or {}).get("clip_minus_dino")
    if weak:
        th = power["thresholds"]  # type: ignore[index]
        rule = (
            f"needs every encoder's category accuracy at least {th['linear']:.2f} (linear "
            f"probe) and {th['knn']:.2f} (kNN) of the way from chance to 100%; then supported "
            f"if the paired-bootstrap CI of CLIP − DINO lies within ±{tol:g} points"
        )
        if _has_ci(paired):
            value, low, high = (float(paired[k]) for k in ("value", "low", "high"))
            number = Number("CLIP − DINO linear probe", value, low, high, "points")
        else:
            value = float(control["clip_minus_dino_linear_points"])
            number = Number("CLIP − DINO linear probe", value, unit="points")
        return Finding(topic, claim, "not resolved", rule, (number,), weak)
    if _has_ci(paired):
        value, low, high = (float(paired[k]) for k in ("value", "low", "high"))
        outside = low > tol or high < -tol
        verdict: Verdict = (
            "supported"
            if gap_matched(low, high, tol)
            else "contradicted"
            if outside
            else "not resolved"
        )
        rule = (
            f"supported if the paired-bootstrap CI of CLIP − DINO lies within ±{tol:g} points, "
            "contradicted if it lies entirely outside"
        )
        number = Number("CLIP − DINO linear probe", value, low, high, "points")
        return Finding(topic, claim, verdict, rule, (number,))
    value = float(control["clip_minus_dino_linear_points"])
    verdict = "supported" if abs(value) <= tol else "contradicted"
    rule = f"supported if |CLIP − DINO| ≤ {tol:g} points"
    number = Number("CLIP − DINO linear probe", value, unit="points")
    return Finding(topic, claim, verdict, rule, (number,), "point estimate only: no paired CI")


def control_power(control: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``evaluate.power.power_check`` on the control's (possibly pooled) accuracies, with the
    thresholds ``control.json`` records (the defaults for a file written before it did)."""
    if not control or not control.get("encoders"):
        return None
    th = (control.get("power") or {}).get("thresholds") or {}
    return power_check(
        control["encoders"], th.get("linear", POWER_LINEAR), th.get("knn", POWER_KNN)
    )


# -- embeddings ----------------------------------------------------------------------------
def _clip_minus_dino(analysis: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Per-factor CLIP − DINO sensitivity differences, whichever way round they were stored."""
    sens = (analysis or {}).get("sensitivity") or {}
    for comp in sens.get("comparisons", []):
        if (comp["a"], comp["b"]) == ("clip", "dino"):
            return comp["factors"]
        if (comp["a"], comp["b"]) == ("dino", "clip"):
            return {
                f: {**d, "value": _neg(d["value"]), "low": _neg(d["high"]), "high": _neg(d["low"])}
                for f, d in comp["factors"].items()
            }
    return None


def _neg(x: float | None) -> float | None:
    return None if x is None else -x


def sensitivity_findings(analysis: Mapping[str, Any] | None) -> list[Finding]:
    """CLIP more sensitive to semantics (category, text), DINO to low-level attributes (colour,
    style): per factor, judged by the paired-bootstrap CI of CLIP − DINO sensitivity."""
    diffs = _clip_minus_dino(analysis)
    level = (analysis or {}).get("config", {}).get("level", 0.95)
    out = []
    for factor in (*SEMANTIC_FACTORS, *LOW_LEVEL_FACTORS):
        semantic = factor in SEMANTIC_FACTORS
        more, less = ("CLIP", "DINO") if semantic else ("DINO", "CLIP")
        claim = f"{more} is more sensitive than {less} to {FACTOR_WORDS.get(factor, factor)}."
        rule = (
            f"sign of the {round(level * 100)}% paired-bootstrap CI of CLIP − DINO sensitivity "
            f"(expected {'> 0' if semantic else '< 0'})"
        )
        d = None if diffs is None else diffs.get(factor)
        if d is None or not _has_ci(d):
            skipped = ((analysis or {}).get("sensitivity") or {}).get("skipped")
            if skipped:  # the analysis said why (real data: no counterfactual scenes)
                why = f"the analysis did not run it: {skipped}"
            elif diffs is None:
                why = "needs the CLIP vs DINO sensitivity comparison in analysis.json"
            else:
                why = f"factor {factor!r} was not measured"
            out.append(Finding("Embeddings", claim, "not run", rule, note=why))
            continue
        side = _side(d["low"], d["high"]) * (1 if semantic else -1)
        verdict: Verdict = {1: "supported", -1: "contradicted", 0: "not resolved"}[side]
        number = Number(f"CLIP − DINO ({factor})", d["value"], d["low"], d["high"], digits=3)
        out.append(Finding("Embeddings", claim, verdict, rule, (number,)))
    return out


def accuracy_matched_findings(matched: Mapping[str, Any] | None) -> list[Finding]:
    """The embedding claims judged on the accuracy-matched checkpoints (``matched.json``:
    the CLIP vs DINO sensitivity on each one's checkpoint closest to the weakest objective's
    final linear probe), by ``sensitivity_findings``' rules; topic and note say so. [] when
    that analysis has nothing to show (not run, or skipped: its ``skipped`` says why)."""
    if not matched or "sensitivity" not in matched:
        return []
    info = matched.get("matched") or {}
    chosen = info.get("encoders") or {}
    where = ", ".join(
        f"{n} at step {chosen[n]['step']} (linear probe {100 * chosen[n]['linear']:.1f}%)"
        for n in matched.get("compared", [])
        if n in chosen
    )
    scenes = (matched.get("sensitivity") or {}).get("scenes")
    note = (
        f"accuracy-matched: {where}; target: {info.get('weakest')}'s final "
        f"{100 * info.get('target', float('nan')):.1f}%; {scenes} scenes"
    )
    if info.get("weakest_learned") is False:
        note = (
            f"{info.get('weakest')}'s final encoder probes no better than the untrained "
            f"network ({100 * info['target']:.1f}% vs {100 * info['untrained']:.1f}% at step "
            f"0), so there is no trained checkpoint to match; {note}"
        )
    return [
        Finding(
            "Embeddings, accuracy-matched",
            f.claim,
            "not resolved" if info.get("weakest_learned") is False else f.verdict,
            f.rule,
            f.numbers,
            f"{note}; {f.note}" if f.note else note,
        )
        for f in sensitivity_findings(matched)
    ]


# -- VLM -----------------------------------------------------------------------------------
def _category(cmp: Mapping[str, Any] | None, view: str, name: str) -> dict[str, Any] | None:
    return ((cmp or {}).get("categories") or {}).get(view, {}).get(name)


def _points(label: str, d: Mapping[str, Any], sign: int = 1) -> Number:
    """A compare() difference (fractions, B − A) in points, optionally as A − B."""
    lo, hi = (d["lo"], d["hi"]) if sign > 0 else (-d["hi"], -d["lo"])
    return Number(label, 100 * sign * d["diff"], 100 * lo, 100 * hi, "points")


def _paired_units(d: Mapping[str, Any]) -> str:
    return f"{d.get('n', '?')} units (questions, or pairs) scored by both VLMs"


def ocr_advantage(clip_vs_dino: Mapping[str, Any] | None) -> Finding:
    """CLIP's VLM ahead on OCR. ``clip_vs_dino``: ``compare(clip_dir, dino_dir)``, DINO − CLIP."""
    claim = "The CLIP VLM answers OCR questions better than the DINO VLM (VMCBench OCR)."
    rule = "supported if the paired-bootstrap 95% CI of CLIP − DINO (VMCBench OCR) is above 0"
    d = _category(clip_vs_dino, "vmc", "OCR")
    if d is None:
        why = _NEEDS.format("dino") if clip_vs_dino is None else "no OCR benchmark was scored"
        return Finding("VLM", claim, "not run", rule, note=why)
    number = _points("CLIP − DINO, VMCBench OCR", d, sign=-1)
    side = _side(number.low, number.high)  # type: ignore[arg-type]
    verdict: Verdict = {1: "supported", -1: "contradicted", 0: "not resolved"}[side]
    return Finding("VLM", claim, verdict, rule, (number,), _paired_units(d))


def vision_centric(clip_vs_dino: Mapping[str, Any] | None) -> Finding:
    """DINO's VLM level with or ahead of CLIP's on vision-centric questions."""
    claim = (
        "The DINO VLM is level with or ahead of the CLIP VLM on vision-centric questions "
        "(Cambrian-1 Vision-Centric)."
    )
    rule = "supported unless the paired-bootstrap 95% CI of DINO − CLIP is entirely below 0"
    d = _category(clip_vs_dino, "cambrian", "Vision-Centric")
    if d is None:
        why = (
            _NEEDS.format("dino")
            if clip_vs_dino is None
            else "no vision-centric benchmark was scored"
        )
        return Finding("VLM", claim, "not run", rule, note=why)
    number = _points("DINO − CLIP, Cambrian-1 Vision-Centric", d)
    side = _side(number.low, number.high)  # type: ignore[arg-type]
    verdict: Verdict = "contradicted" if side < 0 else "supported"
    note = {
        1: "DINO significantly ahead",
        0: "level: the CI includes 0",
        -1: "CLIP significantly ahead",
    }[side]
    return Finding("VLM", claim, verdict, rule, (number,), f"{note}; {_paired_units(d)}")


def no_gain(variant: str, clip_vs_variant: Mapping[str, Any] | None) -> Finding:
    """No gain from a language-supervision variant: no category (either view) where the
    variant's VLM minus CLIP's has a CI entirely above 0."""
    words = VARIANT_WORDS.get(variant, variant)
    claim = f"Language supervision with {words} gives no gain over CLIP in the VLM."
    rule = (
        f"supported unless the paired-bootstrap 95% CI of {variant} − clip lies entirely above 0 "
        "in some category (both views)"
    )
    cats = [
        (f"{VIEW_TITLES[view]} {name}", d)
        for view in ("vmc", "cambrian")
        for name, d in ((clip_vs_variant or {}).get("categories") or {}).get(view, {}).items()
    ]
    if not cats:
        why = _NEEDS.format(variant)
        return Finding("Variants", claim, "not run", rule, note=why)
    numbers = tuple(_points(label, d) for label, d in cats)
    gains = [n for n in numbers if n.low is not None and n.low > 0]
    verdict: Verdict = "contradicted" if gains else "supported"
    note = (
        f"significant gain in {', '.join(n.label for n in gains)}"
        if gains
        else f"{len(numbers)} categories checked, each at 95% (no multiplicity correction)"
    )
    return Finding("Variants", claim, verdict, rule, numbers, note)


def blind_vlms(sanity: Mapping[str, Mapping[str, Any]], names: tuple[str, ...]) -> str:
    """Why a VLM claim is not resolved, in one line: the VLMs among ``names`` that do not
    answer better with their image than with a blank one (``sanity[name]``:
    ``vlm.sanity.image_sanity``; its ``uses_image``: the paired CI of real − blank lies above
    0); '' if all do or it is unknown. The evidence behind it (each check, the LM's picture
    slot, the oracle) is stated once, in the report's VLM checks section."""
    blind = [
        f"{n} {100 * sanity[n]['real']:.1f}% vs blank {100 * sanity[n]['blank']:.1f}%"
        for n in names
        if n in sanity and sanity[n].get("uses_image") is False
    ]
    if not blind:
        return ""
    return f"premise fails: no better than a blank image ({'; '.join(blind)}); see VLM checks"


def _noted(finding: Finding, note: str) -> Finding:
    """``finding`` with ``note`` added (verdict unchanged; not to a claim that did not run)."""
    if not note or finding.verdict == "not run":
        return finding
    both = f"{note}; {finding.note}" if finding.note else note
    return Finding(
        finding.topic, finding.claim, finding.verdict, finding.rule, finding.numbers, both
    )


def _unplanned(finding: Finding, names: tuple[str, ...], vlms: Collection[str] | None) -> Finding:
    """A claim that did not run because the study trains no VLM on one of ``names`` says so
    (``vlms``: the study's VLMs; None when unknown)."""
    missing = [n for n in names if vlms is not None and n not in vlms]
    if finding.verdict != "not run" or not missing:
        return finding
    note = f"this study trains no {' or '.join(missing)} VLM (its vlm_objectives)"
    return Finding(finding.topic, finding.claim, "not run", finding.rule, note=note)


def _premise(finding: Finding, why: str) -> Finding:
    if not why or finding.verdict == "not run":
        return finding
    note = f"{why}; {finding.note}" if finding.note else why
    return Finding(
        finding.topic, finding.claim, "not resolved", finding.rule, finding.numbers, note
    )


def all_findings(
    control: Mapping[str, Any] | None,
    analysis: Mapping[str, Any] | None,
    vs_clip: Mapping[str, Mapping[str, Any]],
    sanity: Mapping[str, Mapping[str, Any]] | None = None,
    vlms: Collection[str] | None = None,
) -> list[Finding]:
    """Every claim, in the paper's order. ``vs_clip[name]``: ``compare(clip_dir, name_dir)``;
    ``sanity[name]``: the VLM's real- vs blank-image check (a VLM claim needs it passed; what
    explains a failure is the VLM checks section's, ``report.vlm_checks``); ``vlms``: the VLMs
    the study trains, if known (a claim about one it does not train says so)."""
    sanity = sanity or {}

    def vlm_claim(finding: Finding, names: tuple[str, ...]) -> Finding:
        return _unplanned(_premise(finding, blind_vlms(sanity, names)), names, vlms)

    power = control_power(control)
    weak = (
        "compute-matched encoders short of the control's power bar (see Control); the "
        "accuracy-matched comparison is under Learning curves"
        if power is not None and not power["powered"]
        else ""
    )
    return [
        matched_classification(control),
        *(_noted(f, weak) for f in sensitivity_findings(analysis)),
        vlm_claim(ocr_advantage(vs_clip.get("dino")), ("clip", "dino")),
        vlm_claim(vision_centric(vs_clip.get("dino")), ("clip", "dino")),
        *(vlm_claim(no_gain(v, vs_clip.get(v)), ("clip", v)) for v in VARIANT_WORDS),
    ]
