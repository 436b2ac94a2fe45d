# Complete AWS install: EKS node groups in an existing VPC, RDS PostgreSQL, Amazon OpenSearch,
# KMS, Secrets Manager, then the platform chart with the bootstrap's rendered values.
module "aws" {
  source = "../../modules/aws"

  name               = var.name
  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  node_groups        = var.node_groups
  tags               = var.tags
}

# Credentials from Secrets Manager, copied into the Kubernetes Secrets the chart references.
data "aws_secretsmanager_secret_version" "temporal_db" {
  secret_id = module.aws.temporal_db_secret_arn
}

data "aws_secretsmanager_secret_version" "master" {
  secret_id = module.aws.postgres_master_secret_arn
}

data "aws_secretsmanager_secret_version" "opensearch" {
  secret_id = module.aws.opensearch_secret_arn
}

locals {
  temporal_db = jsondecode(data.aws_secretsmanager_secret_version.temporal_db.secret_string)
  master      = jsondecode(data.aws_secretsmanager_secret_version.master.secret_string)
  opensearch  = jsondecode(data.aws_secretsmanager_secret_version.opensearch.secret_string)
}

module "temporal_platform" {
  source = "../../modules/temporal-platform"

  namespace = "temporal"
  values = [
    file(var.rendered_values_file),
    yamlencode(module.aws.helm_values),
  ]

  existing_secrets = {
    "temporal-postgres"       = { username = local.temporal_db.username, password = local.temporal_db.password }
    "temporal-postgres-admin" = { username = local.master.username, password = local.master.password }
    "temporal-opensearch"     = { username = local.opensearch.username, password = local.opensearch.password }
    "temporal-rds-ca"         = { "ca.crt" = file(var.rds_ca_bundle_file) }
  }

  depends_on = [module.aws]
}
