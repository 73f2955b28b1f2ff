"""The results report of a sweep: ``results.md`` with its figures in ``results/`` beside it.

    write_report(records, config, summary, Path("docs/results.md"))

Sections (each per test set: the synthetic test volumes pooled, the real map): boundaries against
EBSD fraction (the paper's Fig. 7) and their reduction against Sobel (Fig. 8), inference scaling
in K with the PL-denoising gain beside the exact-posterior curve (Fig. 9), super-resolution
against EBSD fraction (Fig. 10), robustness under PL corruptions (with the paper's duplicated
boundaries under misregistration), uncertainty against error (reliability), and a verdict per
claim (:mod:`ebsdray.experiments.claims`). A section whose data the sweep's size lacks says so.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ebsdray.experiments.claims import claim_verdicts
from ebsdray.experiments.plan import PLAIN_PL
from ebsdray.experiments.reporting import Ctx, table
from ebsdray.experiments.sections import (
    boundaries_section,
    reduction_section,
    robustness_section,
    scaling_section,
    superres_section,
    uncertainty_section,
)
from ebsdray.experiments.stats import UNIT, fraction_label
from ebsdray.precision import cpu_name

SCREENSHOT = "mlflow_sweep.png"


# --- header ---------------------------------------------------------------------------------------


def _seconds(ctx: Ctx) -> float:
    return sum(float(r.get("info", {}).get("seconds", 0.0)) for r in ctx.records)


def _block(name: str, block: dict[str, Any]) -> str:
    fractions = ", ".join(fraction_label(float(f)) for f in block["fractions"])
    parts = [
        "volumes " + ", ".join(block["volumes"]),
        "models " + ", ".join(block["models"]),
        f"EBSD {fractions}",
        "patterns " + ", ".join(block.get("patterns", ["grid"])),
        "PL " + ", ".join(block.get("pl", [PLAIN_PL])),
    ]
    if "seeds" in block:
        parts.append("seeds " + ", ".join(map(str, block["seeds"])))
    return f"`{name}`: " + " x ".join(parts)


def header(ctx: Ctx) -> list[str]:
    c, s = ctx.config, ctx.summary
    plan = c["plan"]
    sampler = ", ".join(f"{k} = {v}" for k, v in c["sampler"].items())
    units = ctx.df.groupby("group")[UNIT].apply(lambda d: len(d.drop_duplicates()))
    used = sorted({r["identity"]["volume"] for r in ctx.records})
    volumes = "; ".join(f"`{n}` {c['volumes'][n]}" for n in used)
    pls = sorted({r["identity"]["pl"] for r in ctx.records})
    pl = "; ".join(f"`{n}` {c['pl_settings'][n]}" for n in pls)
    return [
        "# Results: the paper's claims measured on our models",
        "",
        f"Written by `{c.get('command') or 'jobs/sweep.py'}` (size `{plan['name']}`) on "
        f"{dt.date.today().isoformat()}: {len(ctx.records)} configurations "
        f"taking {_seconds(ctx) / 60:.1f} min of sampling and aggregation in all, as measured "
        f"when each was computed ({len(s['computed'])} in this invocation, which took "
        f"{s['wall_seconds'] / 60:.1f} min; {len(s['skipped'])} from earlier records); "
        f"{cpu_name()}, torch threads {torch.get_num_threads()}, precision {c['precision']}.",
        "",
        "- Test sets (units = volume x section x seed): "
        + ", ".join(f"{g} {n}" for g, n in units.items())
        + f". Volumes: {volumes}. None of them was used for training or tuning (the sampler "
        "was tuned on seeds 5101/5102, the aggregation on 5101-5108).",
        f"- K = {', '.join(map(str, ctx.ks))}: the largest is drawn, smaller K are prefixes of "
        f"the same samples (exactly what a run with that K gives). Sampler: {sampler}; seeds "
        f"{', '.join(map(str, plan.get('seeds', [0])))} unless a block says otherwise.",
        f"- PL settings: {pl}.",
        "- Blocks (configurations: their product, where it makes sense: the PL model at EBSD 0 "
        "only, the EBSD model at EBSD > 0 under PL `none` only, each observation's baselines "
        "once): " + "; ".join(_block(n, b) for n, b in plan["blocks"].items()) + ".",
        "- Numbers are means over units ± standard error. Verdicts compare two methods paired "
        "over the same units: 'xR, 95% CI' is the geometric mean of the per-unit ratios with "
        "its t interval ('± d' a mean difference where a value is 0); 'lower in w/n' counts "
        "the units where the first is lower. "
        "Chamfer in px^2 (pytorch3d semantics; bidirectional = forward + backward), blurred BCE "
        "against the truth blurred with sigma 3, radius 5, disorientation in degrees, PSNR in "
        "dB. The default aggregation takes boundaries from the samples' EBSD when EBSD is "
        "observed; the paper's (Sobel on the samples' PL) is shown as 'PL route' where it "
        "matters.",
        "",
    ]


def verdicts_section(ctx: Ctx) -> list[str]:
    out = ["## Verdicts", ""]
    rows, short = [], []
    for g in ctx.groups():
        by: dict[str, list[str]] = {}
        for v in claim_verdicts(ctx.group(g), ctx.kmax):
            rows.append([v.claim, g, f"**{v.verdict}**", v.numbers])
            by.setdefault(v.verdict, []).append(v.claim.split(" (")[0])
        short.append(f"- {g}: " + "; ".join(f"**{k}**: {', '.join(c)}" for k, c in by.items()))
    return [*out, *short, "", *table(["claim (paper)", "test set", "verdict", "numbers"], rows)]


def _shown(text: str) -> str:
    """A path as a reader can type it on their machine ($HOME for this one's home)."""
    return text.replace(str(Path.home()), "$HOME")


def reproduce_section(ctx: Ctx) -> list[str]:
    c, s = ctx.config, ctx.summary
    out = [
        "## Reproduce",
        "",
        "```bash",
        c.get("command") or f"python jobs/sweep.py size={c['plan']['name']}",
        f"mlflow ui --backend-store-uri {_shown(s['mlflow_tracking_uri'])}",
        "```",
        "",
        f"Runs are in the MLflow experiment `{c['mlflow']['experiment']}`, nested under the "
        f"parent run `{s['mlflow_parent_run_id']}`, one per (configuration, K) with the params "
        "`K`, `ebsd_fraction`, `pattern`, `model`, `pl_corruption`, `seed`, `volume` (baselines: "
        "`model` = sobel / nearest / bilinear, `K` = 0). Rows of every section and K: "
        "`results.parquet` in the sweep's output directory. Running the same command again "
        "skips finished configurations and rewrites this report.",
        "",
    ]
    if (ctx.path.parent / SCREENSHOT).exists():
        out += [f"![the sweep's runs side by side in the MLflow UI]({SCREENSHOT})", ""]
    return out


SECTIONS = (
    header,
    verdicts_section,
    boundaries_section,
    reduction_section,
    scaling_section,
    superres_section,
    robustness_section,
    uncertainty_section,
    reproduce_section,
)


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (configuration, section, K) with identity columns and metrics."""
    return pd.DataFrame([row for rec in records for row in rec["rows"]])


def write_report(records, config: dict[str, Any], summary_: dict[str, Any], path: Path) -> Path:
    """Write the report (Markdown) and its figures (``<path stem>/*.png`` beside it)."""
    path = Path(path)
    ctx = Ctx(
        results_frame(records),
        records,
        config,
        summary_,
        path,
        kmax=max(config["plan"]["samples"]),
        ks=sorted(config["plan"]["samples"]),
    )
    ctx.figdir.mkdir(parents=True, exist_ok=True)
    for old in [*ctx.figdir.glob("fig*_*.png"), *ctx.figdir.glob("reliability_*.png")]:
        old.unlink()  # figures of an earlier size must not linger beside this report
    lines = [line for section in SECTIONS for line in section(ctx)]
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path
