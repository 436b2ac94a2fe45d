# Complete AWS install: EKS node groups in an existing VPC, RDS PostgreSQL, Amazon OpenSearch,
# KMS, Secrets Manager, the operators the chart's resources need, then the platform chart with
# the bootstrap's rendered values.
#
# Inputs rendered from platform.yaml (README):
#   temporal-bootstrap render helm-values    -f platform.yaml -o rendered/   # values.yaml
#   temporal-bootstrap render terraform-vars -f platform.yaml -o .           # node-groups.auto.tfvars.json,
#                                                                            # placement-values.yaml
locals {
  # The one list of Secret names (role => name), shared with the Rust render and k3s/install.sh.
  secret_names = yamldecode(file(coalesce(var.secret_names_file, "${path.module}/../../../helm/temporal-platform/secret-names.yaml")))

  rendered = yamldecode(file(var.rendered_values_file))

  # Kinds of custom resources the rendered values make the chart create, and the node groups
  # that need a device plugin. Each needs an operator (its CRDs) installed before the chart.
  kinds_used = concat(
    anytrue([for p in try(local.rendered.workerPools, []) : try(p.autoscaling.enabled, false)]) ? ["ScaledObject"] : [],
    try(local.rendered.monitoring.serviceMonitor.enabled, false) ? ["ServiceMonitor"] : [],
    try(local.rendered.monitoring.prometheusRule.enabled, false) ? ["PrometheusRule"] : [],
    try(local.rendered.certManager.enabled, false) || var.cert_manager ? ["Certificate"] : [],
    # KEDA's trigger queries Prometheus (workerAutoscaling.prometheusServerAddress).
    anytrue([for p in try(local.rendered.workerPools, []) : try(p.autoscaling.enabled, false)]) ? ["Prometheus"] : [],
    anytrue([for g in values(var.node_groups) : g.ami_type == "AL2023_x86_64_NVIDIA"]) ? ["nvidia.com/gpu"] : [],
  )

  # Every operator this example can install, with the kinds it provides.
  prerequisite_catalog = {
    # Prometheus Operator CRDs (ServiceMonitor, PrometheusRule) and a Prometheus at
    # prometheus-operated.monitoring.svc:9090, which KEDA queries. The selectors select every
    # ServiceMonitor and PrometheusRule, not only those labelled with this release.
    kube-prometheus-stack = {
      repository = "https://prometheus-community.github.io/helm-charts"
      chart      = "kube-prometheus-stack"
      version    = var.prerequisite_versions.kube_prometheus_stack
      namespace  = "monitoring"
      provides   = ["ServiceMonitor", "PrometheusRule", "Prometheus"]
      values = [yamlencode({
        prometheus = { prometheusSpec = {
          serviceMonitorSelectorNilUsesHelmValues = false
          ruleSelectorNilUsesHelmValues           = false
        } }
      })]
    }
    keda = {
      repository = "https://kedacore.github.io/charts"
      chart      = "keda"
      version    = var.prerequisite_versions.keda
      namespace  = "keda"
      provides   = ["ScaledObject"]
      values     = []
    }
    cert-manager = {
      repository = "https://charts.jetstack.io"
      chart      = "cert-manager"
      version    = var.prerequisite_versions.cert_manager
      namespace  = "cert-manager"
      provides   = ["Certificate", "Issuer"]
      values     = [yamlencode({ crds = { enabled = true } })]
    }
    # Exposes nvidia.com/gpu on the GPU node group; tolerates that group's nvidia.com/gpu taint.
    nvidia-device-plugin = {
      repository = "https://nvidia.github.io/k8s-device-plugin"
      chart      = "nvidia-device-plugin"
      version    = var.prerequisite_versions.nvidia_device_plugin
      namespace  = "nvidia-device-plugin"
      provides   = ["nvidia.com/gpu"]
      values = [yamlencode({
        nodeSelector = { "temporal-platform/workload" = "gpu" }
        tolerations  = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]
      })]
    }
  }

  prerequisites = {
    for name, p in local.prerequisite_catalog : name => {
      repository = p.repository
      chart      = p.chart
      version    = p.version
      namespace  = p.namespace
      values     = p.values
    } if length(setintersection(p.provides, local.kinds_used)) > 0
  }

  # Kubernetes Secrets the chart reads, named by secret-names.yaml, created before the release.
  # postgres_admin is the RDS master user: on RDS PostgreSQL 16 it is not a superuser but has
  # CREATEDB and CREATEROLE, which is what the bootstrap needs.
  secrets = merge(
    {
      (local.secret_names.postgres)       = module.aws.credentials.postgres
      (local.secret_names.postgres_admin) = module.aws.credentials.postgres_admin
      (local.secret_names.postgres_ca)    = { "ca.crt" = file(var.rds_ca_bundle_file) }
      (local.secret_names.elasticsearch)  = module.aws.credentials.elasticsearch
      # Amazon OpenSearch serves a certificate of Amazon Trust Services.
      (local.secret_names.elasticsearch_ca) = { "ca.crt" = file(var.opensearch_ca_bundle_file) }
    },
    var.grafana_token == null ? {} : {
      (local.secret_names.grafana_token) = { token = var.grafana_token }
    },
  )
}

module "aws" {
  source = "../../modules/aws"

  name               = var.name
  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  node_groups        = var.node_groups
  secret_names       = local.secret_names
  tags               = var.tags
}

module "temporal_platform" {
  source = "../../modules/temporal-platform"

  namespace = "temporal"
  values = [
    file(var.rendered_values_file),
    file(var.placement_values_file),
    yamlencode(module.aws.helm_values),
  ]

  existing_secrets    = local.secrets
  prerequisite_charts = local.prerequisites

  depends_on = [module.aws]
}
