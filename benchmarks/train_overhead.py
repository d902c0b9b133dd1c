"""What a short `kpose train` costs besides its steps, this checkout side by side with a base revision.

A tiny run (RT at 64x48, 24 steps of 4 crops, validation on 8 people) is mostly overhead: TF's
import, building the network and the input pipeline, tracing the training and prediction
functions, validation, saving and plots. Each repeat runs the same command once from this
checkout and once from a `git worktree` of --base (alternating which goes first), each in a
fresh process; medians of the wall times and their ratio are printed.

    python benchmarks/train_overhead.py --base 90f57b9
    python benchmarks/train_overhead.py --base HEAD~3 --repeats 5 --set init=official
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ["efficientpose_rt", "--quiet", "--epochs", "2", "--set", "train.steps_per_epoch=12",
       "--set", "train.backup_every=4", "--set", "model.input_size=[64,48]", "--set", "train.batch_size=4",
       "--set", "train.early_epochs=0", "--set", "data.max_val=8", "--set", "train.eval_every=2"]


def _run(tree: Path, sets: list[str], runs_dir: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `kpose train` whose kpose package is the one in `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    extra = [arg for s in sets for arg in ("--set", s)]
    cmd = [sys.executable, "-c", "import sys, kpose.cli; sys.exit(kpose.cli.main(sys.argv[1:]))",
           "train", *RUN, *extra, "--runs-dir", str(runs_dir)]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"kpose train from {tree} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    shutil.rmtree(runs_dir, ignore_errors=True)
    return seconds, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _which_kpose(tree: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run([sys.executable, "-c", "import kpose, os; print(os.path.dirname(kpose.__file__))"],
                          env=env, cwd=tree, capture_output=True, text=True, check=True).stdout.strip()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="git revision to compare with (e.g. a commit before a change)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each (default: %(default)s)")
    ap.add_argument("--set", dest="sets", action="append", default=["init=null"], metavar="KEY=VALUE",
                    help="recipe overrides for both runs (default: init=null; a later init=... wins)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="kpose-overhead-"))
    base = tmp / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    try:
        for tree in (ROOT, base):  # each run imports its own tree's kpose, not the installed one
            if Path(_which_kpose(tree)) != tree / "kpose":
                raise SystemExit(f"python imports kpose from {_which_kpose(tree)}, not {tree}/kpose")
        times: dict[str, list[tuple[float, float]]] = {"this checkout": [], f"base {args.base}": []}
        trees = list(zip(times, (ROOT, base)))
        for i in range(args.repeats):
            for name, tree in trees[:: 1 if i % 2 == 0 else -1]:
                times[name].append(_run(tree, args.sets, tmp / "runs"))
                print(f"  {name}: {times[name][-1][0]:.1f} s wall, {times[name][-1][1]:.1f} s CPU", flush=True)
        print(f"kpose train {' '.join(RUN)} {' '.join('--set ' + s for s in args.sets)}, medians of "
              f"{args.repeats}:")
        for i, kind in enumerate(("wall", "CPU")):
            mine, theirs = (statistics.median(t[i] for t in v) for v in times.values())
            print(f"  {kind:4s}: this checkout {mine:.1f} s, base {args.base} {theirs:.1f} s "
                  f"(ratio {mine / theirs:.2f})")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
