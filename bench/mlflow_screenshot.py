"""Screenshot of a sweep's runs side by side in the MLflow UI, in a real headless browser.

    .venv/bin/python bench/mlflow_screenshot.py --store ~/ebsdray/mlflow.db --out docs/mlflow_sweep.png

Starts ``mlflow ui`` on a free loopback port, opens the compare view of the sweep's multimodal
runs on an EBSD grid with plain PL at the largest K (one run per EBSD fraction and seed) beside
Sobel's, and saves a PNG. Needs Playwright and Chromium, which are not dependencies of the
package: ``pip install playwright`` and ``apt-get install chromium`` (the browser is used as
installed, ``--chromium /usr/bin/chromium``; ``playwright install`` is not needed).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_runs(store: Path, experiment: str, volume: str, seed: str) -> tuple[str, list[str]]:
    """The experiment id and the runs to compare, from the latest sweep: on one volume and seed
    with plain PL, the multimodal model on an EBSD grid at K = 1 and the largest K for every
    fraction, the PL model, and Sobel on the same observations."""
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name(experiment)
    parents = client.search_runs(
        [exp.experiment_id], "tags.`ebsdray.sweep` != ''", order_by=["attributes.start_time DESC"]
    )
    if not parents:
        sys.exit(f"no sweep in {store}")
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'",
        max_results=5000,
    )
    kmax = max(int(r.data.params["K"]) for r in runs)

    def wanted(r) -> bool:
        p = r.data.params
        if (p["volume"], p["seed"], p["pl_corruption"]) != (volume, seed, "none"):
            return False
        if p["pattern"] == "random":
            return False
        return (p["model"], p["K"]) in {
            ("multimodal", "1"), ("multimodal", str(kmax)), ("pl", "1"), ("pl", str(kmax)),
            ("sobel", "0"),
        }  # fmt: skip

    def order(r):
        p = r.data.params
        return (p["model"], float(p["ebsd_fraction"]), int(p["K"]))

    picked = sorted(filter(wanted, runs), key=order)
    if not picked:
        sys.exit(f"no runs of volume {volume!r}, seed {seed} in the latest sweep")
    return exp.experiment_id, [r.info.run_id for r in picked]


def wait_for(url: str, seconds: float = 90) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    sys.exit(f"mlflow ui did not answer at {url}")


def _choose(page, label: str, keep: list[str]) -> None:
    """Make the parallel-coordinates select after the text ``label`` hold exactly ``keep``."""
    box = page.get_by_text(label, exact=True).locator("xpath=following-sibling::div[1]")
    remove = box.locator(".du-bois-light-select-selection-item-remove")
    while remove.count():
        remove.first.click()
    for name in keep:  # the filtered list starts with the exact name (options sort by name)
        box.click()
        page.keyboard.type(name)
        page.wait_for_timeout(300)
        page.keyboard.press("Enter")
    page.keyboard.press("Escape")


def shoot(url: str, out: Path, chromium: str, width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url, wait_until="load", timeout=120_000)
        page.wait_for_timeout(8000)  # the UI polls (never network-idle); charts render late
        try:  # the assistant side panel covers a third of the page
            page.get_by_role("button", name="Close", exact=True).first.click(timeout=3000)
        except Exception as e:  # cosmetic only
            print(f"(assistant panel left open: {type(e).__name__})")
        try:
            _choose(page, "Parameters:", ["K", "ebsd_fraction", "model"])
            _choose(page, "Metrics:", ["chamfer"])
        except Exception as e:
            print(f"(default parallel-coordinates axes kept: {type(e).__name__})")
        page.wait_for_timeout(2000)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=False, type="png")
        browser.close()


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    a.add_argument("--store", type=Path, default=Path.home() / "ebsdray" / "mlflow.db")
    a.add_argument("--experiment", default="ebsdray-sweep")
    a.add_argument("--out", type=Path, default=Path("docs/mlflow_sweep.png"))
    a.add_argument("--chromium", default="/usr/bin/chromium")
    a.add_argument("--volume", default="synthetic_7102")
    a.add_argument("--seed", default="0")
    a.add_argument("--size", default="1600x1000")
    args = a.parse_args()
    exp_id, run_ids = pick_runs(args.store.resolve(), args.experiment, args.volume, args.seed)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
         f"sqlite:///{args.store.resolve()}", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base)
        query = urllib.parse.urlencode(
            {"runs": json.dumps(run_ids), "experiments": json.dumps([exp_id])}
        )
        width, height = (int(v) for v in args.size.split("x"))
        shoot(f"{base}/#/compare-runs?{query}", args.out, args.chromium, width, height)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB, {len(run_ids)} runs")


if __name__ == "__main__":
    main()
