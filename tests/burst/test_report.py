"""Unit tests of report.py: the summary numbers and CI's short-run assertions, on synthetic runs.

Run: python3 -m unittest discover -s tests/burst -p 'test_*.py'
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402

T0 = 1_000_000.0
BURST, RAMP, HOLD = 60, 30, 180  # the short profile's shape


def make_run(*, first_up_at: float = 75, p95_ms=None, failed: int = 0) -> dict:
    """A run whose burst starts at t=60 s; `p95_ms(t)` is every task's schedule-to-start at t."""
    p95_ms = p95_ms or (lambda t: 2000.0 if 60 <= t < 120 else 20.0)
    steps, replicas = [], 1
    for t in range(0, 360, 15):
        desired = replicas * 2 if t >= first_up_at and replicas < 8 else replicas
        steps.append({"t": float(t), "current": replicas, "desired": desired, "in_flight": 4,
                      "per_trigger": {"slot-utilization": desired}})
        replicas = desired
    activities = []
    for i in range(0, 330 * 2):  # two tasks a second
        t = i / 2
        s2s = p95_ms(t) / 1000
        activities.append({"scheduled": T0 + t, "started": T0 + t + s2s, "ended": T0 + t + s2s + 4, "attempt": 1})
    outcomes = {"COMPLETED": 600 - failed, **({"TIMED_OUT": failed} if failed else {})}
    return {
        "label": "test",
        "t0": T0,
        "profile": {"baseline_rate": 0.5, "multiplier": 10, "baseline_seconds": BURST, "ramp_seconds": RAMP,
                    "hold_seconds": HOLD, "after_seconds": 60, "activity_seconds": 4},
        "steps": steps,
        "activities": activities,
        "workflows": [{"start": T0 + i} for i in range(600)],
        "outcomes": outcomes,
        "series": {"server_p95_seconds": [(0, 0.02)], "backlog_count": [], "triggers": {}},
        "scaled_object": {"minReplicaCount": 1, "maxReplicaCount": 16},
        "worker_env": {"TEMPORAL_WORKER_MAX_CONCURRENT_ACTIVITIES": "4"},
    }


class Recovery(unittest.TestCase):
    def test_back_under_after_the_peak_then_spikes_are_counted(self):
        series = [(45, 10), (60, 5000), (75, 900), (90, 150), (105, 250), (120, 100)]
        back, spikes, rest, top = report.recovery(series, burst=60, load_end=270, threshold_ms=200)
        self.assertEqual(back, 30)  # the bucket at 90 s is the first under 200 ms after the peak
        self.assertEqual((spikes, rest, top), (1, 3, 250))

    def test_never_back_under_during_the_burst(self):
        series = [(60, 5000), (75, 900), (90, 800)]
        self.assertIsNone(report.recovery(series, burst=60, load_end=105, threshold_ms=500)[0])

    def test_never_above_is_zero(self):
        self.assertEqual(report.recovery([(60, 10), (75, 20)], 60, 270, 200)[0], 0.0)


class ShortRunChecks(unittest.TestCase):
    def test_a_good_run_passes(self):
        s = report.summarise(make_run(), None)
        self.assertEqual(s["time_to_first_scale_up_s"], 15)
        self.assertEqual(s["time_until_p95_below_500ms_s"], 60)
        self.assertEqual(report.check_short(s), [])

    def test_a_late_scale_up_fails(self):
        s = report.summarise(make_run(first_up_at=135), None)
        problems = report.check_short(s)
        self.assertTrue(any("first scale-up 75" in p for p in problems), problems)

    def test_a_timed_out_workflow_fails(self):
        problems = report.check_short(report.summarise(make_run(failed=1), None))
        self.assertTrue(any("failed or timed out" in p for p in problems), problems)

    def test_latency_that_never_recovers_fails(self):
        run = make_run(p95_ms=lambda t: 2000.0 if t >= 60 else 20.0)
        problems = report.check_short(report.summarise(run, None))
        self.assertTrue(any("did not come back below 500 ms" in p for p in problems), problems)

    def test_a_pool_that_never_scales_fails(self):
        s = report.summarise(make_run(first_up_at=10_000), None)
        self.assertTrue(any("never scaled above its minimum" in p for p in report.check_short(s)))


if __name__ == "__main__":
    unittest.main()
