#!/usr/bin/env python3
"""Summary and plot of one burst-harness run (run.json written by harness.py).

  report.py RUN_DIR [--plan PLAN.json] [--png FILE] [--check-short]

Writes RUN_DIR/summary.json and RUN_DIR/summary.md, and the PNG (default RUN_DIR/burst.png):
schedule-to-start p95, backlog, replicas and throughput over time with the thresholds drawn.

The schedule-to-start the summary judges is the real one: each activity's start time minus its
scheduled time, both from the server (worker.py logs them), as p95 per 15-second bucket of
scheduled time. The server histogram's p95 that the autoscaler reads from Prometheus is drawn
beside it.

--check-short asserts what CI requires of the short run (exit 1 with the reason otherwise): a
scale-up within the policy's bound after the burst starts, the p95 back below the critical
threshold before the load ends, and no workflow failed or timed out.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import pathlib
import sys

BUCKET_SECONDS = 15
WARNING_MS, SCALE_UP_MS, CRITICAL_MS = 200, 300, 500
# First scale-up bound for --check-short: one Prometheus scrape (30 s in production, 5 s here),
# one HPA sync (15 s) and the time the signal needs to cross its threshold at 10x.
SCALE_UP_BOUND_SECONDS = 60


def p95(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]


def recovery(p95_series: list[tuple[float, float]], burst: float, load_end: float,
             threshold_ms: float) -> tuple[float | None, int, int, float]:
    """(seconds from the burst's start until the per-task p95 first falls below `threshold_ms`
    after its peak, None if it does not before the load ends; then how many of the remaining 15 s
    buckets of the burst went back above it, out of how many, and the highest of them)."""
    during = [(t, v) for t, v in p95_series if burst - BUCKET_SECONDS < t < load_end]
    if not during:
        return 0.0, 0, 0, 0.0
    peak = max(range(len(during)), key=lambda i: during[i][1])
    if during[peak][1] < threshold_ms:
        return 0.0, 0, len(during), 0.0
    back = next((i for i in range(peak + 1, len(during)) if during[i][1] < threshold_ms), None)
    if back is None:
        return None, 0, 0, 0.0
    rest = during[back:]
    spikes = [v for _, v in rest if v >= threshold_ms]
    return max(0.0, during[back][0] - burst), len(spikes), len(rest), max(spikes, default=0.0)


def summarise(run: dict, plan: dict | None) -> dict:
    prof = run["profile"]
    t0, burst = run["t0"], prof["baseline_seconds"]
    load_end = prof["baseline_seconds"] + prof["ramp_seconds"] + prof["hold_seconds"]
    acts = [a for a in run["activities"] if a["attempt"] == 1]
    buckets: dict[int, list[float]] = {}
    for a in acts:
        b = int((a["scheduled"] - t0) // BUCKET_SECONDS)
        buckets.setdefault(b, []).append((a["started"] - a["scheduled"]) * 1000)
    p95_series = sorted((b * BUCKET_SECONDS, p95(v)) for b, v in buckets.items())

    steps = run["steps"]
    after = [s for s in steps if s["t"] >= burst]
    detect = next((s["t"] - burst for s in after
                   if any(v > s["current"] for v in s["per_trigger"].values())), None)
    first_up = next((s["t"] - burst for s in after if s["desired"] > s["current"]), None)
    recovered, spikes, rest, spike_max = recovery(p95_series, burst, load_end, WARNING_MS)
    recovered_critical, spikes_c, rest_c, spike_max_c = recovery(p95_series, burst, load_end, CRITICAL_MS)
    peak_replicas = max(s["desired"] for s in steps)

    # Throughput per replica while saturated: scaler intervals in which every replica was
    # running and ready for the whole interval and more workflows were in flight than all slots
    # could hold (a backlog), so completions per replica-second are the replica's capacity.
    slots = int(run["worker_env"]["TEMPORAL_WORKER_MAX_CONCURRENT_ACTIVITIES"])
    ends = sorted(a["ended"] - t0 for a in run["activities"])
    sat_done = sat_replica_seconds = 0.0
    for prev, cur in zip(steps, steps[1:]):
        if prev["desired"] == prev["current"] and prev["in_flight"] > prev["current"] * slots * 1.5:
            lo, hi = prev["t"] + prof["activity_seconds"], cur["t"] + prof["activity_seconds"]
            sat_done += bisect.bisect_left(ends, hi) - bisect.bisect_left(ends, lo)
            sat_replica_seconds += (hi - lo) * prev["current"]
    per_replica = sat_done / sat_replica_seconds if sat_replica_seconds else None
    peak_rate = prof["baseline_rate"] * prof["multiplier"]

    failed = {k: v for k, v in run["outcomes"].items() if k != "COMPLETED"}
    start_errors = [w["error"] for w in run["workflows"] if "error" in w]
    server_p95 = [v for _, v in run["series"]["server_p95_seconds"]]
    summary = {
        "label": run["label"],
        "load": f"{prof['baseline_rate']:g}/s baseline, {prof['multiplier']:g}x = {peak_rate:g}/s within {prof['ramp_seconds']:g} s, held {prof['hold_seconds']:g} s; activity {prof['activity_seconds']:g} s",
        "workflows_started": len(run["workflows"]),
        "outcomes": run["outcomes"],
        "failed_or_timed_out": sum(failed.values()) + len(start_errors),
        "time_to_detect_s": detect,
        "time_to_first_scale_up_s": first_up,
        "time_until_p95_below_200ms_s": recovered,
        "time_until_p95_below_500ms_s": recovered_critical,
        # After that, 15 s buckets of the burst whose p95 went back above 200 / 500 ms.
        "later_buckets_above_200ms": [spikes, rest, round(spike_max)],
        "later_buckets_above_500ms": [spikes_c, rest_c, round(spike_max_c)],
        # The burst ends (the load drops to baseline) this many seconds after it starts.
        "burst_seconds": load_end - burst,
        "peak_p95_ms": round(max((v for t, v in p95_series if t >= burst - BUCKET_SECONDS), default=0.0)),
        "peak_server_p95_ms": round(max(server_p95, default=0.0) * 1000),
        "replicas_min_max": [run["scaled_object"]["minReplicaCount"], run["scaled_object"]["maxReplicaCount"]],
        "replica_peak": peak_replicas,
        "replicas_final": steps[-1]["desired"],
        "throughput_per_replica_measured": per_replica and round(per_replica, 3),
        "saturated_replica_seconds": round(sat_replica_seconds),
        "throughput_per_replica_model": round(slots / prof["activity_seconds"], 3),
        "slots_per_replica": slots,
    }
    if plan is not None:
        summary["replicas_predicted_by_plan"] = plan_replicas(plan, peak_rate, prof["activity_seconds"])
    return summary


def plan_replicas(plan: dict, rate: float, activity_seconds: float) -> int | None:
    """What the capacity plan's formula (`replicas_for_burst`) gives for this run's peak rate:
    ceil(tasks/s x activity time / (slots per replica x target_slot_utilization))."""
    pool = next((p for p in plan["capacity"]["worker_pools"] if p["name"] == "burst-io"), None)
    target = next((a["value"] for a in plan["capacity"]["assumptions"] if a["name"] == "target_slot_utilization"), None)
    if not pool or target is None:
        return None
    return math.ceil(rate * activity_seconds / (pool["max_concurrent_activities"] * target) - 1e-9)


def markdown(s: dict) -> str:
    def sec(v):
        return "never" if v is None else f"{v:.0f} s"

    def recovered(v, later):
        if v is None:
            return "not during the burst"
        n, of, top = later
        return f"{v:.0f} s" + (f"; later {n} of {of} 15 s buckets above it (max {top:,} ms)" if n else "; stayed under")

    rows = [
        ("load", s["load"]),
        ("workflows started / failed or timed out", f"{s['workflows_started']} / {s['failed_or_timed_out']}"),
        ("time to detect (a trigger asks for more replicas)", sec(s["time_to_detect_s"])),
        ("time to first scale-up", sec(s["time_to_first_scale_up_s"])),
        ("time until p95 is back under 200 ms", recovered(s["time_until_p95_below_200ms_s"], s["later_buckets_above_200ms"])),
        ("time until p95 is back under 500 ms", recovered(s["time_until_p95_below_500ms_s"], s["later_buckets_above_500ms"])),
        ("peak p95 schedule-to-start (measured per task)", f"{s['peak_p95_ms']:,} ms"),
        ("peak p95 the autoscaler saw (server histogram)", f"{s['peak_server_p95_ms']:,} ms"),
        ("replicas: min-max / peak / at the end", f"{s['replicas_min_max'][0]}-{s['replicas_min_max'][1]} / {s['replica_peak']} / {s['replicas_final']}"),
    ]
    if s.get("replicas_predicted_by_plan") is not None:
        rows.append(("replicas the capacity plan predicts for the peak", str(s["replicas_predicted_by_plan"])))
    rows.append(("throughput per saturated replica: measured / model (slots / activity time)", f"{s['throughput_per_replica_measured']} / {s['throughput_per_replica_model']} activities/s (over {s['saturated_replica_seconds']} replica-seconds)"))
    lines = [f"**{s['label']}**", "", "| | |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines) + "\n"


def plot(run: dict, s: dict, png: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prof, t0 = run["profile"], run["t0"]
    burst = prof["baseline_seconds"]
    load_end = burst + prof["ramp_seconds"] + prof["hold_seconds"]
    fig, ax = plt.subplots(4, 1, figsize=(9, 9.5), sharex=True, dpi=80)
    m = 60.0
    for a in ax:
        a.axvspan(burst / m, load_end / m, color="0.93", zorder=0)
        a.grid(alpha=0.3)

    buckets: dict[int, list[float]] = {}
    for a in run["activities"]:
        if a["attempt"] == 1:
            buckets.setdefault(int((a["scheduled"] - t0) // BUCKET_SECONDS), []).append((a["started"] - a["scheduled"]) * 1000)
    xs = sorted(buckets)
    ax[0].plot([(b + 0.5) * BUCKET_SECONDS / m for b in xs], [max(p95(buckets[b]), 1) for b in xs], label="p95 per task (15 s buckets)")
    sp = run["series"]["server_p95_seconds"]
    ax[0].plot([t / m for t, _ in sp], [max(v * 1000, 1) for _, v in sp], label="server histogram p95 (autoscaler input)", alpha=0.8)
    for y, name, c in ((WARNING_MS, "warning 200 ms", "orange"), (SCALE_UP_MS, "scale-up 300 ms", "green"), (CRITICAL_MS, "critical 500 ms", "red")):
        ax[0].axhline(y, color=c, ls="--", lw=1, label=name)
    ax[0].set_yscale("log")
    ax[0].set_ylabel("schedule-to-start (ms)")
    ax[0].legend(fontsize=7, loc="upper right")
    ax[0].set_title(f"{s['label']}: {s['load']}", fontsize=9)

    steps = run["steps"]
    ax[1].plot([st["t"] / m for st in steps], [st["in_flight"] for st in steps], label="workflows in flight")
    bc = run["series"]["backlog_count"]
    if bc:
        ax[1].plot([t / m for t, _ in bc], [v for _, v in bc], label="approximate_backlog_count", alpha=0.8)
    ax[1].set_ylabel("backlog")
    ax[1].legend(fontsize=7, loc="upper right")

    ax[2].step([st["t"] / m for st in steps], [st["desired"] for st in steps], where="post", label="replicas")
    if s.get("replicas_predicted_by_plan"):
        ax[2].axhline(s["replicas_predicted_by_plan"], color="purple", ls=":", label="capacity plan for the peak")
    ax[2].axhline(s["replicas_min_max"][1], color="0.5", ls="--", lw=1, label="maxReplicas")
    ax[2].set_ylabel("replicas")
    ax[2].legend(fontsize=7, loc="upper right")

    def per_bucket(times):
        counts: dict[int, int] = {}
        for t in times:
            counts[int(t // BUCKET_SECONDS)] = counts.get(int(t // BUCKET_SECONDS), 0) + 1
        ks = sorted(counts)
        return [(k + 0.5) * BUCKET_SECONDS / m for k in ks], [counts[k] / BUCKET_SECONDS for k in ks]

    ax[3].plot(*per_bucket([w["start"] - t0 for w in run["workflows"]]), label="workflows started/s")
    ax[3].plot(*per_bucket([a["ended"] - t0 for a in run["activities"]]), label="activities completed/s")
    ax[3].set_ylabel("per second")
    ax[3].set_xlabel("minutes since the start (grey: the burst)")
    ax[3].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def check_short(s: dict) -> list[str]:
    problems = []
    if s["time_to_first_scale_up_s"] is None or s["time_to_first_scale_up_s"] > SCALE_UP_BOUND_SECONDS:
        problems.append(f"first scale-up {s['time_to_first_scale_up_s']} s after the burst, bound {SCALE_UP_BOUND_SECONDS} s")
    if s["time_until_p95_below_500ms_s"] is None:
        problems.append(f"p95 schedule-to-start did not come back below 500 ms within the burst's {s['burst_seconds']:.0f} s")
    if s["failed_or_timed_out"]:
        problems.append(f"{s['failed_or_timed_out']} workflows failed or timed out: {s['outcomes']}")
    if s["replica_peak"] <= s["replicas_min_max"][0]:
        problems.append("the pool never scaled above its minimum")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--plan")
    ap.add_argument("--png")
    ap.add_argument("--check-short", action="store_true")
    args = ap.parse_args()
    d = pathlib.Path(args.run_dir)
    run = json.loads((d / "run.json").read_text())
    plan = json.loads(pathlib.Path(args.plan).read_text()) if args.plan else None
    s = summarise(run, plan)
    (d / "summary.json").write_text(json.dumps(s, indent=1))
    (d / "summary.md").write_text(markdown(s))
    plot(run, s, pathlib.Path(args.png) if args.png else d / "burst.png")
    print(markdown(s))
    if args.check_short:
        problems = check_short(s)
        for p in problems:
            print(f"burst check: {p}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
