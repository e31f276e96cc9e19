"""The whole command-line loop at full size on random-weight models of real configurations.

The suite's ``tests/workbench/cli/test_user_models.py`` runs this loop at reduced width on
every configuration of ``tests/real_configs.REAL``; this runs it at the real sizes (GPT-2 small
124M, Pythia-160m, a 12-layer GQA Llama, Qwen2-0.5B) and records each step's seconds and the
process's peak resident memory. Each model runs in its own subprocess, so the peaks are its own.

Run: ``.venv/bin/python -m benchmarks.user_models [NAME ...]`` (default: every configuration).
Writes benchmarks/results/user_models.json (merged with earlier runs, one entry per model).
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "user_models.json"
STATS = "The weather is mild in spring, and the rivers run high after the rain. " * 200


def _steps(d: Path, examples: Path) -> dict[str, list[str]]:
    m = ["-m", str(d / "model")]
    tofu = ["--forget", str(d / "forget.json"), "--retain", str(d / "retain.json")]
    fields = ["--subject", "Ada", "--prompt", "{} plays", "--target-new", " chess", "--target-true", " golf"]
    return {
        "info": ["info", *m, "--json"],
        "trace (12 tokens, 10 samples)": [
            "trace", "--subject", "Ada", "--prompt", "Ada went to", "--object", " R", *m, "--json",
        ],
        "rome": ["edit", "rome", *fields, "--stats-text", str(d / "stats.txt"), *m, "--save-patch", str(d / "p"),
                 "--json"],
        "forget ga (20 TOFU items)": ["forget", *tofu, "--method", "ga", "--retain-facts", "20", *m,
                                      "--save-patch", str(d / "f"), "--json"],
        "verify --quick (20 items)": ["verify", *tofu, "--patch", str(d / "f"), "--quick", *m, "--json"],
        "export": ["export", "--patch", str(d / "p"), *m, "--out", str(d / "e"), "--json"],
        "audit": ["audit", str(d / "e"), "--json"],
    }  # fmt: skip


def _one(name: str) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from real_configs import save_real_model

    from workbench.cli import main
    from workbench.core.world.as_counterfact import EXAMPLES

    d = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    save_real_model(d / "model", name, reduced=False)
    built = time.perf_counter() - t0
    (d / "stats.txt").write_text(STATS)
    for part, out in (("forget05", "forget.json"), ("retain", "retain.json")):
        (d / out).write_text(json.dumps(json.loads((EXAMPLES / f"tofu_{part}.json").read_text())[:20]))
    steps = {}
    for step, args in _steps(d, EXAMPLES).items():
        t, err = time.perf_counter(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(args)
        steps[step] = {"seconds": round(time.perf_counter() - t, 2), "exit": code}
        if code:  # what the user would have read
            steps[step]["stderr"] = [line for line in err.getvalue().splitlines() if line.strip()][-5:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return {"build_seconds": round(built, 1), "steps": steps, "peak_rss_mb": peak}


def main() -> None:
    names = sys.argv[1:] or ["gpt2-small", "pythia-160m", "llama-gqa", "qwen2-0.5b"]
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in names:
        child = subprocess.run(
            [sys.executable, "-c", f"import json, benchmarks.user_models as b; print(json.dumps(b._one({name!r})))"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        if child.returncode != 0:
            results[name] = {"error": child.stderr.strip().splitlines()[-1:]}
        else:
            results[name] = json.loads(child.stdout.strip().splitlines()[-1])
        print(name, json.dumps(results[name]))
        OUT.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
