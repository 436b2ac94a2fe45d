"""The replica count KEDA and the Kubernetes HorizontalPodAutoscaler would choose, with no cluster.

The burst harness cannot run KEDA or kube-controller-manager, so this module re-implements the two
control loops that decide a KEDA ScaledObject's replica count, rule for rule, from their sources:

* KEDA v2.16 (github.com/kedacore/keda, tag v2.16.1): the ScaledObject becomes an HPA
  (controllers/keda/hpa.go `newHPAForScaledObject`); every pollingInterval the scale loop decides
  activation (0 -> 1) and deactivation (-> 0) (pkg/scaling/executor/scale_scaledobjects.go
  `RequestScale`). Docs: https://keda.sh/docs/2.16/reference/scaledobject-spec/ and
  https://keda.sh/docs/2.16/concepts/scaling-deployments/ ("activation phase" vs "scaling phase").
* The HPA controller, autoscaling/v2 (github.com/kubernetes/kubernetes,
  pkg/controller/podautoscaler/horizontal.go and replica_calculator.go): everything between 1 and
  maxReplicas. Docs:
  https://kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/

A KEDA prometheus trigger is an HPA External metric whose target is the trigger's metricType:
"Value" (the whole query value against the threshold) or "AverageValue" (the value divided among the
pods); pkg/scalers/prometheus_scaler.go `GetMetricSpecForScaling` -> scaler.go
`GetMetricTargetMili`.

Time model: one `Autoscaler.step` is one KEDA poll followed by one HPA sync, both seeing the same
metric values. In a cluster the HPA syncs every 15 s (--horizontal-pod-autoscaler-sync-period) on
its own clock; the caller chooses the step cadence. Timestamps are compared exactly as the Go code
compares them (`After`/`Before`, so an event exactly one period old is outside the period); in a
cluster, millisecond jitter decides those boundary cases.

Not modelled (scaled_object_from_manifest refuses them): KEDA fallback, idleReplicaCount,
initialCooldownPeriod, scalingModifiers and the pause annotations; per-direction HPA tolerances
(HPAConfigurableTolerance). Pod readiness is reduced to a count passed to `step`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Policy:
    """One HPAScalingPolicy: at most `value` pods ("Pods") or percent ("Percent") per period."""

    type: str
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    """HPAScalingRules for one direction (behavior.scaleUp or behavior.scaleDown)."""

    stabilization_window_seconds: int
    select_policy: str
    policies: tuple[Policy, ...]


# pkg/apis/autoscaling/v2/defaults.go: the rules the API server fills in for a behavior direction
# left unset. The scale-down window has no API default: the controller substitutes its
# --horizontal-pod-autoscaler-downscale-stabilization flag, 5 min by default
# (horizontal.go `maybeInitScaleDownStabilizationWindow`).
DEFAULT_SCALE_UP = Rules(0, "Max", (Policy("Pods", 4, 15), Policy("Percent", 100, 15)))
DEFAULT_SCALE_DOWN = Rules(300, "Max", (Policy("Percent", 100, 15),))


def _milli(x: float) -> int:
    """KEDA hands the HPA milli-quantities, truncated: `int64(value * 1000)` in scaler.go
    `GenerateMetricInMili` (metric values) and `GetMetricTargetMili` (thresholds)."""
    return int(x * 1000)


@dataclass(frozen=True)
class Trigger:
    """One KEDA prometheus trigger.

    The value fed to `Autoscaler.step` is what KEDA's prometheus scaler returns: the query's single
    sample, 0.0 for an empty result (metadata.ignoreNullValues defaults to true,
    prometheus_scaler.go `ExecutePromQuery`), or None when the query fails.
    """

    name: str
    query: str
    metric_type: str
    threshold: float
    activation_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.metric_type not in ("Value", "AverageValue"):
            # scaler.go `GetMetricTargetType` rejects Utilization for external scalers.
            raise ValueError(f"trigger {self.name}: metricType must be Value or AverageValue")
        if _milli(self.threshold) <= 0:
            # The HPA API rejects a target that is not positive (validation `validateMetricTarget`).
            raise ValueError(f"trigger {self.name}: threshold must be at least 0.001")


@dataclass(frozen=True)
class ScaledObject:
    """The parts of a keda.sh/v1alpha1 ScaledObject that decide replica counts.

    `behavior_set` is False when the ScaledObject has no
    advanced.horizontalPodAutoscalerConfig.behavior: KEDA then creates the HPA with spec.behavior
    nil (controllers/keda/hpa.go), the API server does not default a nil behavior (defaults.go
    `SetDefaults_HorizontalPodAutoscalerBehavior`), and the controller takes its older path,
    `normalizeDesiredReplicas`, which is not the default behavior (see
    `Autoscaler._normalize_legacy`). Then `scale_up` is unused and
    `scale_down.stabilization_window_seconds` stands for the controller's
    --horizontal-pod-autoscaler-downscale-stabilization flag.
    """

    min_replicas: int
    max_replicas: int
    polling_interval: int
    cooldown_period: int
    scale_up: Rules
    scale_down: Rules
    triggers: tuple[Trigger, ...]
    tolerance: float = 0.1  # kube-controller-manager --horizontal-pod-autoscaler-tolerance default
    behavior_set: bool = True

    @property
    def hpa_min_replicas(self) -> int:
        """The HPA's minReplicas: minReplicaCount, but never 0 (hpa.go `getHPAMinReplicas`)."""
        return max(self.min_replicas, 1)


def _rules(doc: dict | None, default: Rules) -> Rules:
    """defaults.go `copyHPAScalingRules`: every field that is set replaces the default's."""
    doc = doc or {}
    policies = doc.get("policies")
    return Rules(
        stabilization_window_seconds=int(
            doc.get("stabilizationWindowSeconds", default.stabilization_window_seconds)
        ),
        select_policy=doc.get("selectPolicy", default.select_policy),
        policies=default.policies
        if policies is None
        else tuple(Policy(p["type"], int(p["value"]), int(p["periodSeconds"])) for p in policies),
    )


# Fields that change the decision but are not modelled; refusing them keeps the model honest.
_UNSUPPORTED_SPEC = ("fallback", "idleReplicaCount", "initialCooldownPeriod")


def scaled_object_from_manifest(doc: dict) -> ScaledObject:
    """Parse a rendered keda.sh/v1alpha1 ScaledObject (a dict loaded from YAML).

    Defaults for absent fields: KEDA pollingInterval 30, cooldownPeriod 300, minReplicaCount 0,
    maxReplicaCount 100 (scaledobject-spec docs), metricType AverageValue (scaler.go
    `GetMetricTargetType`), trigger name "s{i}-prometheus" (scaler.go
    `GenerateMetricNameWithIndex`); HPA behavior per direction from DEFAULT_SCALE_UP /
    DEFAULT_SCALE_DOWN. Trigger metadata values are strings in YAML. Raises ValueError for what
    this model does not implement.
    """
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    spec = doc["spec"]
    advanced = spec.get("advanced") or {}
    unsupported = [k for k in _UNSUPPORTED_SPEC if k in spec]
    unsupported += ["advanced.scalingModifiers"] if "scalingModifiers" in advanced else []
    unsupported += [k for k in annotations if k.startswith("autoscaling.keda.sh/paused")]
    if unsupported:
        raise ValueError(f"not modelled: {', '.join(unsupported)}")

    behavior = (advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior")
    triggers = []
    for i, t in enumerate(spec["triggers"]):
        if t["type"] != "prometheus":
            raise ValueError(f"trigger {i}: only prometheus triggers are modelled, not {t['type']}")
        meta = t["metadata"]
        triggers.append(
            Trigger(
                name=t.get("name") or f"s{i}-prometheus",
                query=meta["query"],
                metric_type=t.get("metricType") or "AverageValue",
                threshold=float(meta["threshold"]),
                activation_threshold=float(meta.get("activationThreshold", 0)),
            )
        )
    return ScaledObject(
        min_replicas=int(spec.get("minReplicaCount", 0)),
        max_replicas=int(spec.get("maxReplicaCount", 100)),
        polling_interval=int(spec.get("pollingInterval", 30)),
        cooldown_period=int(spec.get("cooldownPeriod", 300)),
        scale_up=_rules((behavior or {}).get("scaleUp"), DEFAULT_SCALE_UP),
        scale_down=_rules((behavior or {}).get("scaleDown"), DEFAULT_SCALE_DOWN),
        triggers=tuple(triggers),
        behavior_set=behavior is not None,
    )


def replicas_for_trigger(
    trigger: Trigger, value: float, current: int, ready: int, tolerance: float
) -> int:
    """The HPA's proposal for one External metric; `current` >= 1 (the HPA computes nothing at 0).

    Value target (replica_calculator.go `GetExternalMetricReplicas` -> `getUsageRatioReplicaCount`):
    usageRatio = value / threshold; within tolerance keep `current`, else
    ceil(usageRatio * ready pods).
    AverageValue target (`GetExternalPerPodMetricReplicas`): usageRatio = value / (threshold *
    pods); within tolerance keep the pod count, else ceil(value / threshold), whatever the count.
    "Within tolerance" is `Tolerances.isWithin`: 1 - tolerance <= usageRatio <= 1 + tolerance.
    """
    usage, target = _milli(value), _milli(trigger.threshold)
    if trigger.metric_type == "Value":
        ratio = usage / target
        if 1.0 - tolerance <= ratio <= 1.0 + tolerance:
            return current
        return math.ceil(ratio * ready)
    ratio = usage / (target * current)
    if 1.0 - tolerance <= ratio <= 1.0 + tolerance:
        return current
    return math.ceil(usage / target)


@dataclass
class Decision:
    """What one step decided; `desired` is the replica count to run from now on."""

    desired: int
    per_trigger: dict[str, int]  # the HPA's proposal per trigger that returned a value
    recommendation: int  # max over per_trigger: what the HPA acts on, before stabilization
    stabilized: int  # after the stabilization window
    limited_by: str | None  # the last stage that changed the value on its way to `desired`
    active: bool  # KEDA activation: some trigger value > its activation_threshold
    reason: str


@dataclass
class Autoscaler:
    """KEDA's scale loop plus the HPA controller for one ScaledObject, with their memories.

    Call `step` once per poll with the replica count currently running (the previous `desired`).
    """

    so: ScaledObject
    # KEDA: status.lastActiveTime.
    _last_active: float | None = field(default=None, init=False)
    # HPA: unstabilized recommendations (timestamp, replicas), None until the first sync
    # (horizontal.go `recordInitialRecommendation`).
    _recommendations: list[tuple[float, int]] | None = field(default=None, init=False)
    # HPA: scale events (timestamp, replicas added / removed), for the policies' periods.
    _up_events: list[tuple[float, int]] = field(default_factory=list, init=False)
    _down_events: list[tuple[float, int]] = field(default_factory=list, init=False)

    def step(
        self,
        now: float,
        current_replicas: int,
        metric_values: dict[str, float | None],
        ready_replicas: int | None = None,
    ) -> Decision:
        """One KEDA poll, then (unless KEDA itself scaled) one HPA sync.

        `metric_values` maps trigger name -> value, None for a failed query (a missing name counts
        as failed). `ready_replicas` is the number of Running and Ready pods, which the Value target
        multiplies by (replica_calculator.go `getReadyPodsCount`); it defaults to
        `current_replicas`.
        """
        values = {t.name: metric_values.get(t.name) for t in self.so.triggers}
        # scale_handler.go `getScaledObjectState`: active if any trigger is, in error if any fails;
        # prometheus_scaler.go `GetMetricsAndActivity`: active means value > activationThreshold.
        active = any(
            values[t.name] is not None and values[t.name] > t.activation_threshold
            for t in self.so.triggers
        )
        errored = any(v is None for v in values.values())
        keda = self._keda(now, current_replicas, active, errored)
        if keda is not None:
            return keda
        ready = current_replicas if ready_replicas is None else ready_replicas
        return self._hpa(now, current_replicas, ready, values, active)

    # --- KEDA -----------------------------------------------------------------------------------

    def _keda(self, now: float, current: int, active: bool, errored: bool) -> Decision | None:
        """scale_scaledobjects.go `RequestScale` (v2.16.1); None when KEDA leaves it to the HPA."""
        so = self.so

        def scaled(desired: int, reason: str) -> Decision:
            return Decision(desired, {}, desired, desired, None, active, reason)

        if active:
            if current == 0:
                # `scaleFromZeroOrIdle`: to minReplicaCount, or 1 if that is 0.
                self._last_active = now
                return scaled(max(so.min_replicas, 1), "KEDA: trigger active, activating from 0")
            if not errored:
                # Only the "all triggers fine" case refreshes lastActiveTime; with a failing
                # trigger KEDA just marks the ScaledObject PartialTriggerError.
                self._last_active = now
            return None
        if errored:
            # No trigger active and one failing, no fallback: KEDA only sets Ready=False; in
            # particular it does not scale to zero.
            return None
        if current > 0 and so.min_replicas == 0:
            # `scaleToZeroOrIdle`: only once lastActiveTime + cooldownPeriod is before now; with no
            # lastActiveTime (never active) immediately (initialCooldownPeriod defaults to 0).
            if self._last_active is None or self._last_active + so.cooldown_period < now:
                return scaled(0, "KEDA: no trigger active for the cooldown period, scaling to 0")
            return None
        if current < so.min_replicas:
            return scaled(so.min_replicas, "KEDA: below minReplicaCount")
        return None

    # --- HPA --------------------------------------------------------------------------------------

    def _hpa(
        self, now: float, current: int, ready: int, values: dict[str, float | None], active: bool
    ) -> Decision:
        """horizontal.go `reconcileAutoscaler` for one sync."""
        so = self.so
        hpa_min = so.hpa_min_replicas
        if self._recommendations is None:
            self._recommendations = [(now, current)]  # `recordInitialRecommendation`

        def fixed(desired: int, limited_by: str | None, reason: str, **kw) -> Decision:
            if desired != current:
                self._store_scale_event(now, current, desired)
            kw.setdefault("per_trigger", {})
            kw.setdefault("recommendation", desired)
            kw.setdefault("stabilized", desired)
            return Decision(
                desired=desired, limited_by=limited_by, active=active, reason=reason, **kw
            )

        # The checks `reconcileAutoscaler` makes before looking at any metric.
        if current == 0:
            return fixed(0, None, "HPA: scaling disabled at 0 replicas (KEDA activates from 0)")
        if current > so.max_replicas:
            return fixed(so.max_replicas, "maxReplicas", "HPA: above maxReplicas")
        if current < hpa_min:
            return fixed(hpa_min, "minReplicas", "HPA: below minReplicas")

        # `computeReplicasForMetrics`: the largest proposal among the metrics that worked.
        per_trigger = {
            t.name: replicas_for_trigger(t, values[t.name], current, ready, so.tolerance)
            for t in so.triggers
            if values[t.name] is not None
        }
        failed = [t.name for t in so.triggers if values[t.name] is None]
        if not per_trigger:
            return fixed(current, "metric error", f"HPA: every metric failed ({', '.join(failed)})",
                         recommendation=current, stabilized=current)
        best = max(per_trigger, key=per_trigger.__getitem__)
        recommendation = per_trigger[best]
        if failed and recommendation < current:
            # Some metrics failed and the rest would scale down: the sync ends with an error before
            # recording a recommendation or scaling.
            why = f"HPA: not scaling down to {recommendation} while {', '.join(failed)} failed"
            return fixed(current, "metric error", why, per_trigger=per_trigger,
                         recommendation=recommendation, stabilized=current)

        normalize = self._normalize_with_behaviors if so.behavior_set else self._normalize_legacy
        stabilized, desired, limited_by = normalize(now, current, recommendation)
        if limited_by is None and stabilized != recommendation:
            limited_by = "stabilization"
        reason = (f"HPA: {best} proposes {recommendation}, stabilized {stabilized}"
                  + (f", limited by {limited_by}" if limited_by else "") + f" -> {desired}")
        return fixed(desired, limited_by, reason, per_trigger=per_trigger,
                     recommendation=recommendation, stabilized=stabilized)

    def _normalize_with_behaviors(
        self, now: float, current: int, desired: int
    ) -> tuple[int, int, str | None]:
        """`normalizeDesiredReplicasWithBehaviors`: stabilize, then apply the rate policies."""
        stabilized = self._stabilize_with_behaviors(now, current, desired)
        final, limited_by = self._rate_limit(now, current, stabilized)
        return stabilized, final, limited_by

    def _stabilize_with_behaviors(self, now: float, current: int, desired: int) -> int:
        """`stabilizeRecommendationWithBehaviors`.

        Over the scale-up window take the MIN of the recommendations (the new one included), over
        the scale-down window the MAX; start from the current count, raise it to the up-minimum,
        lower it to the down-maximum. So a scale-up needs every recommendation in the up window to
        be higher, and a scale-down needs every one in the down window to be lower.
        """
        up_cutoff = now - self.so.scale_up.stabilization_window_seconds
        down_cutoff = now - self.so.scale_down.stabilization_window_seconds
        up = down = desired
        for ts, rec in self._recommendations:
            if ts > up_cutoff:
                up = min(up, rec)
            if ts > down_cutoff:
                down = max(down, rec)
        result = current
        if result < up:
            result = up
        if result > down:
            result = down
        # Go overwrites one sample older than both windows instead of appending; dropping them all
        # is the same, since the cutoffs only move forward.
        oldest_kept = min(up_cutoff, down_cutoff)
        self._recommendations = [
            (ts, rec) for ts, rec in self._recommendations if ts >= oldest_kept
        ] + [(now, desired)]
        return result

    def _rate_limit(self, now: float, current: int, desired: int) -> tuple[int, str | None]:
        """`convertDesiredReplicasWithBehaviorRate`: the policies' limit, and min/max replicas."""
        so = self.so
        if desired > current:
            limit = max(self._scale_up_limit(now, current), current)
            if so.max_replicas > limit:
                maximum, why = limit, "scaleUp policy"
            else:
                maximum, why = so.max_replicas, "maxReplicas"
            if desired > maximum:
                return maximum, why
        elif desired < current:
            limit = min(self._scale_down_limit(now, current), current)
            if so.hpa_min_replicas < limit:
                minimum, why = limit, "scaleDown policy"
            else:
                minimum, why = so.hpa_min_replicas, "minReplicas"
            if desired < minimum:
                return minimum, why
        return desired, None

    def _period_start(self, now: float, current: int, period: int) -> int:
        """The replica count when a policy's period began: the current count minus what was added
        and plus what was removed in the last `period` seconds (`getReplicasChangePerPeriod`, which
        counts events strictly after now - period)."""
        cutoff = now - period
        added = sum(n for ts, n in self._up_events if ts > cutoff)
        removed = sum(n for ts, n in self._down_events if ts > cutoff)
        return current - added + removed

    def _scale_up_limit(self, now: float, current: int) -> float:
        """`calculateScaleUpLimitWithScalingRules`: Pods -> start + value; Percent ->
        ceil(start * (1 + value/100)), rounded up so a small count can still grow; Max picks the
        largest, Min the smallest, Disabled allows nothing."""
        rules = self.so.scale_up
        if rules.select_policy == "Disabled":
            return current
        pick, result = (min, math.inf) if rules.select_policy == "Min" else (max, -math.inf)
        for p in rules.policies:
            start = self._period_start(now, current, p.period_seconds)
            if p.type == "Pods":
                proposed = start + p.value
            else:
                proposed = math.ceil(start * (1 + p.value / 100))
            result = pick(result, proposed)
        return result

    def _scale_down_limit(self, now: float, current: int) -> float:
        """`calculateScaleDownLimitWithBehaviors`: Pods -> start - value; Percent ->
        int32(start * (1 - value/100)), truncated (so 5 pods at 10 % may drop to 4); "Max" means
        the largest change, i.e. the lowest limit; "Min" the highest; Disabled allows nothing."""
        rules = self.so.scale_down
        if rules.select_policy == "Disabled":
            return current
        pick, result = (max, -math.inf) if rules.select_policy == "Min" else (min, math.inf)
        for p in rules.policies:
            start = self._period_start(now, current, p.period_seconds)
            if p.type == "Pods":
                proposed = start - p.value
            else:
                proposed = int(start * (1 - p.value / 100))
            result = pick(result, proposed)
        return result

    def _store_scale_event(self, now: float, before: int, after: int) -> None:
        """`storeScaleEvent`, kept only when a behavior is set (as in Go): events older than the
        direction's longest policy period can no longer count (`markScaleEventsOutdated`)."""
        if not self.so.behavior_set:
            return
        up = after > before
        rules = self.so.scale_up if up else self.so.scale_down
        cutoff = now - max((p.period_seconds for p in rules.policies), default=0)
        events = self._up_events if up else self._down_events
        events = [(ts, n) for ts, n in events if ts >= cutoff]
        events.append((now, abs(after - before)))
        if up:
            self._up_events = events
        else:
            self._down_events = events

    def _normalize_legacy(
        self, now: float, current: int, desired: int
    ) -> tuple[int, int, str | None]:
        """`normalizeDesiredReplicas`, the path for an HPA without spec.behavior.

        Stabilization (`stabilizeRecommendation`) is the MAX of the recommendations of the last
        downscale-stabilization window (counting one exactly at the cutoff), in both directions, so
        even a scale-up may use an older, higher recommendation. The rate limit
        (`convertDesiredReplicasWithRules` / `calculateScaleUpLimit`) has no history: at most
        max(2 * current, 4) per sync; a scale-down is not rate limited at all.
        """
        cutoff = now - self.so.scale_down.stabilization_window_seconds
        in_window = [(ts, rec) for ts, rec in self._recommendations if ts >= cutoff]
        stabilized = max([desired] + [rec for _, rec in in_window])
        self._recommendations = in_window + [(now, desired)]

        scale_up_limit = int(max(2.0 * current, 4.0))
        if self.so.max_replicas > scale_up_limit:
            maximum, why = scale_up_limit, "scaleUp limit"
        else:
            maximum, why = self.so.max_replicas, "maxReplicas"
        if stabilized < self.so.hpa_min_replicas:
            return stabilized, self.so.hpa_min_replicas, "minReplicas"
        if stabilized > maximum:
            return stabilized, maximum, why
        return stabilized, stabilized, None
