"""Tests of the KEDA + HPA model in hpa.py; every expected number is derived by hand from the rules
quoted in hpa.py's docstrings (horizontal.go, replica_calculator.go, KEDA's scale_scaledobjects.go).

Run from the repository root: python3 -m unittest discover -s tests/burst -p 'test_*.py'
"""

from __future__ import annotations

import unittest

from hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Autoscaler,
    Policy,
    Rules,
    ScaledObject,
    Trigger,
    replicas_for_trigger,
    scaled_object_from_manifest,
)

# Rules that never limit: for tests about something else.
UNLIMITED_UP = Rules(0, "Max", (Policy("Percent", 10000, 15),))
UNLIMITED_DOWN = Rules(0, "Max", (Policy("Percent", 100, 15),))


def value_trigger(name: str = "q", threshold: float = 10.0) -> Trigger:
    return Trigger(name, "query", "Value", threshold)


def average_trigger(name: str = "q", threshold: float = 10.0, activation: float = 0.0) -> Trigger:
    return Trigger(name, "query", "AverageValue", threshold, activation)


def scaled_object(triggers, scale_up=UNLIMITED_UP, scale_down=UNLIMITED_DOWN, **kw) -> ScaledObject:
    kw = {"min_replicas": 1, "max_replicas": 100, "polling_interval": 15, "cooldown_period": 300,
          **kw}
    return ScaledObject(scale_up=scale_up, scale_down=scale_down, triggers=tuple(triggers), **kw)


def replay(so: ScaledObject, start: int, series) -> list[int]:
    """Feed a recorded series [(t, {trigger: value})] as the harness does: each step sees the
    replica count the previous step decided."""
    autoscaler, current, trajectory = Autoscaler(so), start, []
    for t, values in series:
        current = autoscaler.step(t, current, values).desired
        trajectory.append(current)
    return trajectory


def constant(value: float, steps: int, every: int = 15, name: str = "q"):
    return [(i * every, {name: value}) for i in range(steps)]


class ProposalTest(unittest.TestCase):
    def test_tolerance_band_keeps_the_current_count(self):
        t = value_trigger(threshold=10)
        # usageRatio 1.09 and 0.91 are within 10 % of 1: no change.
        self.assertEqual(replicas_for_trigger(t, 10.9, 4, 4, 0.1), 4)
        self.assertEqual(replicas_for_trigger(t, 9.1, 4, 4, 0.1), 4)
        # 1.15 -> ceil(1.15 * 4) = 5; 0.7 -> ceil(2.8) = 3.
        self.assertEqual(replicas_for_trigger(t, 11.5, 4, 4, 0.1), 5)
        self.assertEqual(replicas_for_trigger(t, 7.0, 4, 4, 0.1), 3)
        # A tighter tolerance reacts to the same 9 % excess: ceil(1.09 * 4) = 5.
        self.assertEqual(replicas_for_trigger(t, 10.9, 4, 4, 0.05), 5)

    def test_value_scales_the_current_pods_average_value_divides_the_total(self):
        value, average = value_trigger(threshold=10), average_trigger(threshold=10)
        # Value: the whole metric against the threshold, times the pods: ratio 5 -> 5 * 4 = 20.
        self.assertEqual(replicas_for_trigger(value, 50, 4, 4, 0.1), 20)
        # AverageValue: ratio 50 / (10 * 4) = 1.25 -> ceil(50 / 10) = 5, whatever the pod count.
        self.assertEqual(replicas_for_trigger(average, 50, 4, 4, 0.1), 5)
        self.assertEqual(replicas_for_trigger(average, 25, 4, 4, 0.1), 3)  # ceil(2.5)
        # 42 / 40 = 1.05 is within tolerance: the pod count stays.
        self.assertEqual(replicas_for_trigger(average, 42, 4, 4, 0.1), 4)

    def test_value_target_multiplies_by_ready_pods_only(self):
        # 4 pods, 2 of them ready, ratio 2: ceil(2 * 2) = 4, not 8.
        self.assertEqual(replicas_for_trigger(value_trigger(), 20, 4, 2, 0.1), 4)

    def test_thresholds_are_milli_quantities(self):
        # 10.0004 truncates to 10000 milli, exactly the threshold.
        self.assertEqual(replicas_for_trigger(value_trigger(), 10.0004, 3, 3, 0.0), 3)
        with self.assertRaises(ValueError):
            Trigger("q", "query", "Value", 0.0004)
        with self.assertRaises(ValueError):
            Trigger("q", "query", "Utilization", 1)

    def test_the_hpa_takes_the_largest_proposal(self):
        so = scaled_object([value_trigger("a"), average_trigger("b", threshold=5)])
        d = Autoscaler(so).step(0, 2, {"a": 30, "b": 40})
        # a: ratio 3 -> ceil(3 * 2) = 6; b: ceil(40 / 5) = 8.
        self.assertEqual(d.per_trigger, {"a": 6, "b": 8})
        self.assertEqual((d.recommendation, d.desired), (8, 8))


class ScaleUpTest(unittest.TestCase):
    HUGE = {"q": 1e6}  # a Value ratio of 100000: only the policies limit

    def test_default_policies_double_or_add_four_every_15_seconds(self):
        so = scaled_object([value_trigger(threshold=1)], scale_up=DEFAULT_SCALE_UP)
        autoscaler, current, seen = Autoscaler(so), 2, []
        for t in (0, 15, 30, 45):
            d = autoscaler.step(t, current, self.HUGE)
            self.assertEqual(d.limited_by, "scaleUp policy")
            current = d.desired
            seen.append(current)
        # Period start 2: max(2 + 4, ceil(2 * 2)) = 6. The event at t=0 is exactly one period old at
        # t=15, so it no longer counts: start 6 -> max(10, 12) = 12, then 24, then 48.
        self.assertEqual(seen, [6, 12, 24, 48])

    def test_changes_within_the_period_count_against_it(self):
        so = scaled_object([value_trigger(threshold=1)], scale_up=DEFAULT_SCALE_UP)
        # At t=10 the +4 of t=0 is inside the 15 s period: start 6 - 4 = 2 -> limit 6, no change.
        series = [(t, self.HUGE) for t in (0, 10, 20, 30)]
        self.assertEqual(replay(so, 2, series), [6, 6, 12, 12])

    def test_select_policy_min_and_disabled(self):
        policies = DEFAULT_SCALE_UP.policies
        minimum = scaled_object([value_trigger(threshold=1)], scale_up=Rules(0, "Min", policies))
        # min(2 + 4, 2 * 2) = 4, then min(8, 8) = 8, then min(12, 16) = 12.
        self.assertEqual(replay(minimum, 2, [(t, self.HUGE) for t in (0, 15, 30)]), [4, 8, 12])
        disabled = scaled_object([value_trigger(threshold=1)],
                                 scale_up=Rules(0, "Disabled", policies))
        self.assertEqual(replay(disabled, 2, [(0, self.HUGE)]), [2])

    def test_max_replicas_caps_the_policy(self):
        so = scaled_object([value_trigger(threshold=1)], scale_up=DEFAULT_SCALE_UP, max_replicas=20)
        autoscaler = Autoscaler(so)
        self.assertEqual(autoscaler.step(0, 12, self.HUGE).desired, 20)
        self.assertEqual(autoscaler.step(15, 20, self.HUGE).limited_by, "maxReplicas")
        # A count above maxReplicas (set by hand) is brought down before any metric is read.
        d = Autoscaler(so).step(0, 30, self.HUGE)
        self.assertEqual((d.desired, d.limited_by, d.per_trigger), (20, "maxReplicas", {}))

    def test_scale_up_stabilization_window_takes_the_lowest_recent_recommendation(self):
        so = scaled_object([average_trigger()], scale_up=Rules(60, "Max", UNLIMITED_UP.policies))
        autoscaler = Autoscaler(so)
        # The first sync also records the current count (2) as a recommendation.
        self.assertEqual(autoscaler.step(0, 2, {"q": 80}).desired, 2)
        d = autoscaler.step(30, 2, {"q": 80})
        self.assertEqual((d.recommendation, d.stabilized, d.limited_by), (8, 2, "stabilization"))
        # At t=60 the t=0 samples left the window: min(8, 8) = 8.
        self.assertEqual(autoscaler.step(60, 2, {"q": 80}).desired, 8)


class ScaleDownTest(unittest.TestCase):
    def test_a_drop_waits_for_the_window_then_at_most_10_percent_a_minute(self):
        so = scaled_object(
            [average_trigger()],
            scale_down=Rules(600, "Max", (Policy("Percent", 10, 60),)),
            max_replicas=40,
        )
        # 200 over 20 pods is on target; from t=30 the metric asks for ceil(50 / 10) = 5.
        series = [(0, {"q": 200})] + [(t, {"q": 50}) for t in range(30, 1231, 30)]
        autoscaler, current, by_time = Autoscaler(so), 20, {}
        for t, values in series:
            d = autoscaler.step(t, current, values)
            current = by_time[t] = d.desired
            if 30 <= t < 600:
                self.assertEqual((d.desired, d.limited_by), (20, "stabilization"))
        # t=600: the 20s of t=0 are exactly 600 s old and leave the window. Percent 10 of the period
        # start, truncated: 20 -> 18; the -2 then counts for 60 s (18 + 2 = 20 -> 18 again), so each
        # new step lands every 60 s: 16, 14 (int(14.4)), 12, 10, 9, 8, 7, 6, 5.
        expected = {600: 18, 630: 18, 660: 16, 690: 16, 720: 14, 780: 12, 840: 10, 900: 9,
                    960: 8, 1020: 7, 1080: 6, 1140: 5, 1200: 5, 1230: 5}
        self.assertEqual({t: by_time[t] for t in expected}, expected)

    def test_min_replicas_floor(self):
        so = scaled_object([average_trigger()], min_replicas=3)
        d = Autoscaler(so).step(0, 10, {"q": 1})  # active (1 > 0): the HPA scales
        # Percent 100 allows int(10 * 0) = 0, the floor is minReplicas.
        self.assertEqual((d.recommendation, d.desired, d.limited_by), (1, 3, "minReplicas"))


class MetricErrorTest(unittest.TestCase):
    so = scaled_object([average_trigger("a"), average_trigger("b")])

    def test_no_scale_down_while_a_metric_fails(self):
        d = Autoscaler(self.so).step(0, 10, {"a": None, "b": 40})
        self.assertEqual((d.recommendation, d.desired, d.limited_by), (4, 10, "metric error"))

    def test_scale_up_on_the_metrics_that_work(self):
        d = Autoscaler(self.so).step(0, 10, {"a": None, "b": 150})
        self.assertEqual((d.per_trigger, d.desired), ({"b": 15}, 15))

    def test_all_failed_keeps_the_count(self):
        d = Autoscaler(self.so).step(0, 10, {})
        self.assertEqual((d.desired, d.limited_by), (10, "metric error"))


class KedaTest(unittest.TestCase):
    def test_activation_from_zero_and_cooldown_to_zero(self):
        so = scaled_object(
            [average_trigger()],
            scale_up=DEFAULT_SCALE_UP,
            scale_down=DEFAULT_SCALE_DOWN,
            min_replicas=0,
            max_replicas=10,
            polling_interval=30,
            cooldown_period=300,
        )
        values = {0: 0, 30: 50, 60: 50}
        series = [(t, {"q": values.get(t, 0)}) for t in range(0, 451, 30)]
        # t=0 idle at 0; t=30 active: KEDA activates to 1; t=60 the HPA: ceil(50 / 10) = 5 (the
        # default policy allows 1 + 4). From t=90 the metric is 0: the 300 s scale-down window holds
        # 5 until the t=60 samples leave it at t=360, where the HPA goes to its minReplicas 1; KEDA
        # scales to 0 at t=390, the first poll after lastActiveTime (60) + cooldown (300).
        expected = [0, 1, 5] + [5] * 9 + [1, 0, 0, 0]
        self.assertEqual(replay(so, 0, series), expected)

    def test_activation_threshold_is_strict(self):
        autoscaler = Autoscaler(scaled_object([average_trigger(activation=5)], min_replicas=0))
        d = autoscaler.step(0, 0, {"q": 5})  # 5 is not > 5
        self.assertEqual((d.desired, d.active), (0, False))
        d = autoscaler.step(30, 0, {"q": 6})
        self.assertEqual((d.desired, d.active), (1, True))

    def test_a_positive_min_replica_count_is_restored_active_or_not(self):
        so = scaled_object([average_trigger(activation=5)], min_replicas=2)
        self.assertEqual(Autoscaler(so).step(0, 0, {"q": 6}).desired, 2)  # activation
        self.assertEqual(Autoscaler(so).step(0, 0, {"q": 0}).desired, 2)  # below minReplicaCount

    def test_never_active_scales_to_zero_at_once(self):
        # No lastActiveTime yet: no cooldown to wait for.
        so = scaled_object([average_trigger()], min_replicas=0)
        self.assertEqual(Autoscaler(so).step(0, 3, {"q": 0}).desired, 0)

    def test_a_failing_trigger_blocks_scale_to_zero_and_the_active_time(self):
        so = scaled_object([average_trigger("a"), average_trigger("b")], min_replicas=0,
                           cooldown_period=60)
        autoscaler = Autoscaler(so)
        autoscaler.step(0, 2, {"a": 20, "b": 0})  # active: lastActiveTime 0
        # Active but with b failing: lastActiveTime stays 0. Inactive and failing: no scale to zero.
        autoscaler.step(30, 2, {"a": 20, "b": None})
        self.assertEqual(autoscaler.step(90, 2, {"a": 0, "b": None}).desired, 2)
        # Both fine and idle: 0 + 60 < 120, so to zero (t=30 did not count as active).
        self.assertEqual(autoscaler.step(120, 2, {"a": 0, "b": 0}).desired, 0)


class RecordedSeriesTest(unittest.TestCase):
    def test_burst_to_ten_times_and_back(self):
        so = scaled_object(
            [average_trigger("backlog")],
            scale_up=DEFAULT_SCALE_UP,
            scale_down=Rules(60, "Max", (Policy("Pods", 2, 30),)),
            max_replicas=20,
        )
        values = [10, 10, 100, 100, 100, 100] + [10] * 13
        series = [(15 * i, {"backlog": v}) for i, v in enumerate(values)]
        # Up: 1 -> 5 (1 + 4 beats 2 * 1) -> 10 (ceil(100 / 10); the policy would allow 10 or 12).
        # Down: the 60 s window holds 10 until t=135 (the last 10 was recommended at t=75), then
        # 2 pods per 30 s, each step lasting a whole period, to minReplicas 1.
        expected = [1, 1, 5, 10, 10, 10, 10, 10, 10, 8, 8, 6, 6, 4, 4, 2, 2, 1, 1]
        self.assertEqual(replay(so, 1, series), expected)

    def test_the_scale_down_window_prevents_sawtooth(self):
        # A load that comes and goes every 30 s: 40 (4 pods' worth) and 10 (1 pod's worth).
        values = [40, 40, 10, 10] * 5
        series = [(15 * i, {"q": v}) for i, v in enumerate(values)]
        twitchy = scaled_object([average_trigger()], scale_up=DEFAULT_SCALE_UP,
                                scale_down=Rules(0, "Max", DEFAULT_SCALE_DOWN.policies))
        self.assertEqual(replay(twitchy, 4, series), [4, 4, 1, 1] * 5)
        steady = scaled_object([average_trigger()], scale_up=DEFAULT_SCALE_UP,
                               scale_down=DEFAULT_SCALE_DOWN)
        self.assertEqual(replay(steady, 4, series), [4] * 20)


class LegacyPathTest(unittest.TestCase):
    def test_without_behavior_scale_up_is_at_most_double_or_four(self):
        so = scaled_object([value_trigger(threshold=1)], max_replicas=100, behavior_set=False,
                           scale_down=DEFAULT_SCALE_DOWN)
        trajectory = replay(so, 2, constant(1e6, 6))
        # max(2 * current, 4) per sync, with no memory: 4, 8, 16, 32, 64, then maxReplicas.
        self.assertEqual(trajectory, [4, 8, 16, 32, 64, 100])

    def test_without_behavior_scale_up_uses_the_highest_recent_recommendation(self):
        so = scaled_object([average_trigger()], behavior_set=False, scale_down=DEFAULT_SCALE_DOWN)
        autoscaler = Autoscaler(so)
        self.assertEqual(autoscaler.step(0, 4, {"q": 100}).desired, 8)  # wants 10, 2 x 4 = 8
        # Now 90 over 8 pods asks for 9, but 10 was recommended within 5 minutes.
        d = autoscaler.step(15, 8, {"q": 90})
        self.assertEqual((d.recommendation, d.stabilized, d.desired), (9, 10, 10))


class ManifestTest(unittest.TestCase):
    def test_a_rendered_scaled_object(self):
        doc = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "pool", "namespace": "temporal"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pool"},
                "minReplicaCount": 2,
                "maxReplicaCount": 40,
                "pollingInterval": 15,
                "cooldownPeriod": 120,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {
                            "scaleUp": {
                                "stabilizationWindowSeconds": 120,
                                "selectPolicy": "Max",
                                "policies": [
                                    {"type": "Percent", "value": 100, "periodSeconds": 60},
                                    {"type": "Pods", "value": 4, "periodSeconds": 60},
                                ],
                            },
                            "scaleDown": {
                                "stabilizationWindowSeconds": 600,
                                "selectPolicy": "Min",
                                "policies": [{"type": "Percent", "value": 25, "periodSeconds": 60}],
                            },
                        }
                    }
                },
                "triggers": [
                    {
                        "type": "prometheus",
                        "metricType": "Value",
                        "metadata": {"serverAddress": "http://prom:9090", "threshold": "1",
                                     "query": "latency_ratio"},
                    },
                    {
                        "type": "prometheus",
                        "name": "backlog",
                        "metadata": {"serverAddress": "http://prom:9090", "threshold": "25",
                                     "activationThreshold": "5", "query": "backlog"},
                    },
                ],
            },
        }
        self.assertEqual(
            scaled_object_from_manifest(doc),
            ScaledObject(
                min_replicas=2,
                max_replicas=40,
                polling_interval=15,
                cooldown_period=120,
                scale_up=Rules(120, "Max", (Policy("Percent", 100, 60), Policy("Pods", 4, 60))),
                scale_down=Rules(600, "Min", (Policy("Percent", 25, 60),)),
                triggers=(
                    Trigger("s0-prometheus", "latency_ratio", "Value", 1.0),
                    Trigger("backlog", "backlog", "AverageValue", 25.0, 5.0),
                ),
            ),
        )

    def test_defaults(self):
        doc = {"spec": {"triggers": [{"type": "prometheus",
                                      "metadata": {"query": "q", "threshold": "10"}}]}}
        self.assertEqual(
            scaled_object_from_manifest(doc),
            ScaledObject(
                min_replicas=0,
                max_replicas=100,
                polling_interval=30,
                cooldown_period=300,
                scale_up=DEFAULT_SCALE_UP,
                scale_down=DEFAULT_SCALE_DOWN,
                triggers=(Trigger("s0-prometheus", "q", "AverageValue", 10.0),),
                behavior_set=False,
            ),
        )

    def test_a_partial_behavior_is_completed_field_by_field(self):
        doc = {"spec": {
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}}}},
            "triggers": [{"type": "prometheus", "metadata": {"query": "q", "threshold": "1"}}],
        }}
        so = scaled_object_from_manifest(doc)
        self.assertTrue(so.behavior_set)
        self.assertEqual(so.scale_up, DEFAULT_SCALE_UP)
        self.assertEqual(so.scale_down, Rules(300, "Max", (Policy("Pods", 1, 30),)))

    def test_what_is_not_modelled_is_refused(self):
        prometheus = {"type": "prometheus", "metadata": {"query": "q", "threshold": "1"}}
        for spec in (
            {"triggers": [{"type": "cpu", "metadata": {"value": "60"}}]},
            {"triggers": [prometheus], "fallback": {"failureThreshold": 3, "replicas": 2}},
            {"triggers": [prometheus], "advanced": {"scalingModifiers": {"formula": "s0"}}},
        ):
            with self.assertRaises(ValueError):
                scaled_object_from_manifest({"spec": spec})


if __name__ == "__main__":
    unittest.main()


class RecordedRealRuns(unittest.TestCase):
    """The trigger values the harness read from the real Prometheus in the README's two 50x runs
    (tests/burst/fixtures/recorded-50x-burst.json), replayed step by step: the model must take
    exactly the decisions recorded then, for the old chart's ScaledObject and for the new one."""

    def replay(self, name: str) -> None:
        import json
        from pathlib import Path

        run = json.loads((Path(__file__).parent / "fixtures" / "recorded-50x-burst.json").read_text())[name]
        a = Autoscaler(scaled_object_from_manifest(run["scaled_object"]))
        got = [a.step(s["t"], s["current"], s["values"]).desired for s in run["steps"]]
        self.assertEqual(got, [s["desired"] for s in run["steps"]])

    def test_before_the_old_policy(self):
        self.replay("before")

    def test_after_the_new_policy(self):
        self.replay("after")
