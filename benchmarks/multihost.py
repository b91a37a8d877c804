"""Three hosts on this machine (network namespaces, nothing shared but the network), driven
by docs/multi-node.md exactly as tests/multihost/ drives it: how long the hosts take to
join, how fast the Q4_K_M artifact moves from the worker that built it to the other, and
how many non-streaming requests are lost while a host is cut off and restored and while a
changed spec rolls over (2 clients, 8 tokens each, from a fourth namespace).

Usage (root): .venv/bin/python benchmarks/multihost.py [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    report = Path(tempfile.mkdtemp()) / "multihost.json"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/multihost"], cwd=ROOT,
                       env={**os.environ, "ORCHESTRATOR_MULTIHOST_REPORT": str(report)})
    if not report.exists():
        sys.exit(f"tests/multihost did not run (exit {r.returncode})")
    figures = json.loads(report.read_text())
    t = figures.get("transfer", {})
    print(f"hosts joined (head + 2 workers, token auth):   {figures['join_s']:.1f} s")
    print(f"build + up across the hosts:                     {figures['build_and_up_s']:.1f} s")
    print(f"artifact pulled between hosts: {t.get('mb', 0):.1f} MB in {t.get('seconds', 0):.2f} s"
          f" = {t.get('mb_per_s', 0):.1f} MB/s")
    for name in ("cut_off", "replan"):
        f = figures.get(name)
        if f:
            print(f"{name}: {f['requests']} requests, {f['lost']} lost")
    if "replan_up_s" in figures:
        print(f"re-plan `up` (F16 pool to Q4_K_M, rolled over): {figures['replan_up_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
