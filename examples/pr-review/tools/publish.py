"""The pr-review pipeline's last stage: write review.md, and post it when asked to.

    python publish.py --run-dir DIR --reviewers a,b,c [--pr N] [--post true] [--timed-out X]

review.md holds the review the human signed off (the rework stage's if it ran last, else
the synthesize chat's), then each reviewer's own findings under its name, so every
finding says who found it. With --post true and a pull request number, the review is
posted with `gh pr review N --comment`; without gh, or when the sign-off timed out, it is
not posted and the stage says why. It writes its own status.json, whose notes say where
review.md is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--reviewers", required=True, help="the reviewer stages, comma-separated")
    parser.add_argument("--where", default="", help="what was reviewed, for the title")
    parser.add_argument("--pr", default="")
    parser.add_argument("--post", default="false")
    parser.add_argument("--timed-out", default="false")
    args = parser.parse_args()
    run: Path = args.run_dir

    final = _latest(run / "rework" / "response.md", run / "synthesize" / "response.md")
    if final is None:
        return _status("fail", "no signed-off review: neither rework nor synthesize ran")
    parts = [f"# Review{': ' + args.where if args.where else ''}", final.read_text().strip()]
    parts.append("## Each reviewer's findings")
    for name in [n.strip() for n in args.reviewers.split(",") if n.strip()]:
        found = run / name / "response.md"
        text = found.read_text().strip() if found.is_file() else "(no review)"
        parts.append(f"### Found by {name}\n\n{text}")
    review = run / "review.md"
    review.write_text("\n\n".join(parts) + "\n", encoding="utf-8")

    notes = f"review written to {review}"
    if args.post.lower() == "true":
        notes += "; " + _post(review, args.pr, timed_out=args.timed_out.lower() == "true")
    print(notes)
    return _status("success", notes)


def _latest(*paths: Path) -> Path | None:
    existing = [path for path in paths if path.is_file()]
    return max(existing, key=lambda path: path.stat().st_mtime_ns) if existing else None


def _post(review: Path, pr: str, *, timed_out: bool) -> str:
    if timed_out:
        return "not posted: the sign-off timed out, so nobody approved it"
    if not pr:
        return "not posted: post=true needs pr_number=N"
    if shutil.which("gh") is None:
        return "not posted: GitHub's CLI `gh` is not on PATH (https://cli.github.com)"
    done = subprocess.run(
        ["gh", "pr", "review", pr, "--comment", "--body-file", str(review)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return f"not posted: gh pr review failed: {done.stderr.strip()}"
    return f"posted on pull request #{pr}"


def _status(outcome: str, notes: str) -> int:
    stage_dir = os.environ.get("ATTRACTOR_STAGE_DIR")
    if stage_dir:
        status = {"outcome": outcome, "notes": notes, "context_updates": {"review.notes": notes}}
        if outcome != "success":
            status["failure_reason"] = notes
        Path(stage_dir, "status.json").write_text(json.dumps(status), encoding="utf-8")
    return 0 if outcome == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
