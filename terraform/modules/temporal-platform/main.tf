locals {
  chart_path = coalesce(var.chart_path, "${path.module}/../../../helm/temporal-platform")
  labels = merge(var.labels, {
    "app.kubernetes.io/part-of"    = "temporal-platform"
    "app.kubernetes.io/managed-by" = "terraform"
  })
}

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = merge(local.labels, {
      "pod-security.kubernetes.io/enforce"         = "restricted"
      "pod-security.kubernetes.io/enforce-version" = "latest"
    })
  }
}

# Secrets the chart references by name (existingSecret). Created only when given.
resource "kubernetes_secret_v1" "existing" {
  for_each = nonsensitive(toset(keys(var.existing_secrets)))

  metadata {
    name      = each.key
    namespace = var.namespace
    labels    = local.labels
  }

  data = var.existing_secrets[each.key]
  type = "Opaque"

  depends_on = [kubernetes_namespace_v1.this]
}

# Operators whose CRDs the chart uses (ScaledObject, Certificate, ServiceMonitor, PrometheusRule).
resource "helm_release" "prerequisite" {
  for_each = var.prerequisite_charts

  name             = each.key
  repository       = each.value.repository
  chart            = each.value.chart
  version          = each.value.version
  namespace        = each.value.namespace
  create_namespace = true
  values           = each.value.values
  wait             = true
  atomic           = true
}

resource "helm_release" "this" {
  name             = var.release_name
  namespace        = var.namespace
  create_namespace = false
  chart            = local.chart_path
  version          = var.chart_version
  values           = var.values

  # The pre-install/pre-upgrade schema Job runs first; server pods start only after it succeeds.
  timeout         = var.timeout_seconds
  atomic          = var.atomic
  wait            = true
  wait_for_jobs   = true
  cleanup_on_fail = false
  max_history     = 20

  depends_on = [kubernetes_namespace_v1.this, kubernetes_secret_v1.existing, helm_release.prerequisite]
}
