"""The step count that lets runs trained side by side finish inside a training window.

    python3 scripts/choose_steps.py WINDOW_MINUTES BATCH PROBE_LOG...          # one count for every run
    python3 scripts/choose_steps.py --each WINDOW_MINUTES BATCH PROBE_LOG...   # "RUN STEPS" per run
    python3 scripts/choose_steps.py --fix STEPS_FILE "RUN..." RUN=STEPS...     # these runs get exactly these steps

Each PROBE_LOG is the log.jsonl of a short probe run (`maskmamba.train generator --log-every 50`), started as the
lease lays the real runs out on the GPUs, so GPU sharing is in the rate. A probe's rate is measured over the time
every probe was past step 100 and still running (from the wall-clock `time` of its log lines): two probes sharing a
GPU start and end at different moments, and a rate that counts the time one ran alone overstates what it will get
beside the other. Logs without times, or probes that overlapped for under MIN_OVERLAP seconds, fall back to each
probe's own cumulative rates at step 100 and at its last line (which leaves CUDA-graph capture and compilation
out), with a warning. The slowest
probe sets the steps (equal images seen, as a scaling study needs), or with --each every run gets the steps its own
rate fits (each fills the window). Steps are multiples of 300 (snapshots at thirds, held-out losses at twentieths).
--fix rewrites a steps file (one count for all, or "RUN STEPS" lines) as "RUN STEPS" lines for the named runs, with
the given runs set to their fixed counts (a comparison with an earlier run trains for exactly its steps).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

SETTLED_STEP = 100  # rates before this include start-up
MIN_OVERLAP = 10.0  # seconds all probes must have run together for their common window to count
WINDOW_SHARE = 0.9  # of the window less a minute: held-out losses, snapshots and the final export run inside it
MULTIPLE = 300


def _settled_rows(log: Path) -> list[dict]:
    """A probe's training log lines from step SETTLED_STEP on."""
    rows = map(json.loads, log.read_text().splitlines())
    return [r for r in rows if r.get("event") == "train" and r["step"] >= SETTLED_STEP]


def steady_rate(log: Path, batch: int) -> float:
    """Images per second between step SETTLED_STEP and the probe's last logged step."""
    rows = _settled_rows(log)
    if len(rows) < 2:
        raise SystemExit(f"{log}: fewer than two log lines after step {SETTLED_STEP}; probe longer")
    (s1, r1), (s2, r2) = [(r["step"], r["images_per_s"]) for r in (rows[0], rows[-1])]
    return (s2 - s1) * batch / (s2 * batch / r2 - s1 * batch / r1)


def _timed_rows(log: Path) -> list[tuple[float, int]]:
    """(wall-clock time, step) of a probe's settled log lines; empty when the log has no times."""
    rows = _settled_rows(log)
    return [] if any("time" not in r for r in rows) else [(r["time"], r["step"]) for r in rows]


def _step_at(rows: list[tuple[float, int]], when: float) -> float:
    """The step a probe had reached at `when`, interpolated between its log lines."""
    for (t1, s1), (t2, s2) in zip(rows, rows[1:]):
        if t1 <= when <= t2:
            return s1 + (s2 - s1) * (when - t1) / (t2 - t1) if t2 > t1 else s2
    raise ValueError(f"{when} is outside the probe's logged times")


def rates_of(logs: list[Path], batch: int) -> dict[str, float]:
    """Images per second of each probe (named by its folder) while all of them ran; see the module's docstring."""
    timed = [_timed_rows(log) for log in logs]
    if all(len(rows) >= 2 for rows in timed):
        start, end = max(rows[0][0] for rows in timed), min(rows[-1][0] for rows in timed)
        if end - start >= MIN_OVERLAP:
            return {log.parent.name: (_step_at(rows, end) - _step_at(rows, start)) * batch / (end - start)
                    for log, rows in zip(logs, timed)}
        print(f"probes overlapped for {max(end - start, 0):.1f} s only: each probe's own rate is used",
              file=sys.stderr)
    return {log.parent.name: steady_rate(log, batch) for log in logs}


def choose_steps(window_minutes: float, batch: int, rates: list[float]) -> int:
    seconds = max(window_minutes - 1, 0) * 60 * WINDOW_SHARE
    return max(MULTIPLE, int(min(rates) * seconds / batch) // MULTIPLE * MULTIPLE)


def fix_steps(text: str, runs: list[str], fixed: dict[str, int]) -> str:
    """A steps file's text as "RUN STEPS" lines for `runs`, the `fixed` ones replaced."""
    lines = text.split()
    if len(lines) == 1:
        chosen = {run: int(lines[0]) for run in runs}
    else:
        chosen = {run: int(steps) for run, steps in zip(lines[::2], lines[1::2])}
    missing = set(fixed) - set(runs)
    if missing:
        raise SystemExit(f"fixed steps for runs not in the list: {sorted(missing)}")
    chosen.update(fixed)
    return "".join(f"{run} {chosen[run]}\n" for run in runs if run in chosen)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--fix"] and len(args) >= 4:
        path = Path(args[1])
        fixed = {run: int(steps) for run, _, steps in (pair.partition("=") for pair in args[3:])}
        path.write_text(fix_steps(path.read_text(), args[2].split(), fixed))
        return
    each = args[:1] == ["--each"]
    args = args[each:]
    if len(args) < 3:
        raise SystemExit(__doc__)
    window, batch, logs = float(args[0]), int(args[1]), [Path(p) for p in args[2:]]
    rates = rates_of(logs, batch)
    print("steady images/s:", {name: round(rate) for name, rate in rates.items()}, file=sys.stderr)
    if each:
        for name, rate in rates.items():
            print(name, choose_steps(window, batch, [rate]))
    else:
        print(choose_steps(window, batch, list(rates.values())))


if __name__ == "__main__":
    main()
