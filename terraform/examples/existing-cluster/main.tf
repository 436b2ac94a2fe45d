# Installs the platform chart into a cluster you already run. Datastores and their Secrets
# exist already; the values come from `temporal-bootstrap render helm-values`.
module "temporal_platform" {
  source = "../../modules/temporal-platform"

  namespace        = var.namespace
  create_namespace = false
  values           = compact([file(var.rendered_values_file), var.override_values])
}
