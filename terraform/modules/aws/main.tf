data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region
  tags       = merge(var.tags, { "temporal-platform/name" = var.name })
  pg         = var.postgres
  os         = var.opensearch
  # OpenSearch zone awareness: one subnet per zone, two or three zones. The data node count must
  # be a multiple of the zone count (checked by a precondition on the domain).
  os_zone_count = min(3, length(var.private_subnet_ids))
  # Temporal's own OpenSearch user (not the master user): created once with the master
  # credentials through the security plugin's REST API, see the README.
  os_temporal_user = local.os.temporal_user
}

# --------------------------------------------------------------------------------------- KMS
# One customer-managed key for EKS secrets, node volumes, RDS, OpenSearch, Secrets Manager
# and CloudWatch Logs of this platform.
data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:This is a KMS key policy; in a key policy Resource "*" means this key only, and write access is limited to the account and the listed services
  #checkov:skip=CKV_AWS_356:This is a KMS key policy; in a key policy Resource "*" means this key only
  #checkov:skip=CKV_AWS_109:This is a KMS key policy; the account root statement is the standard one that lets IAM policies of the account govern the key
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:*"]
    }
  }

  statement {
    sid       = "AutoScalingVolumes"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "${var.name}: Temporal platform data (EKS secrets, volumes, RDS, OpenSearch, secrets, logs)"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# --------------------------------------------------------------------------------------- EKS
data "aws_iam_policy_document" "eks_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "cluster" {
  name               = "${var.name}-eks-cluster"
  assume_role_policy = data.aws_iam_policy_document.eks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "cluster" {
  role       = aws_iam_role.cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# Envelope encryption of Secrets: the control plane encrypts and decrypts data keys with the
# platform key as the cluster role (AmazonEKSClusterPolicy grants no KMS access).
data "aws_iam_policy_document" "cluster_kms" {
  statement {
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
    resources = [aws_kms_key.this.arn]
  }
}

resource "aws_iam_role_policy" "cluster_kms" {
  name   = "${var.name}-eks-secrets-kms"
  role   = aws_iam_role.cluster.id
  policy = data.aws_iam_policy_document.cluster_kms.json
}

resource "aws_cloudwatch_log_group" "eks" {
  name              = "/aws/eks/${var.name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_eks_cluster" "this" {
  name     = var.name
  version  = var.cluster_version
  role_arn = aws_iam_role.cluster.arn

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = true
  }

  vpc_config {
    subnet_ids              = var.private_subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = length(var.cluster_endpoint_public_access_cidrs) > 0
    public_access_cidrs     = length(var.cluster_endpoint_public_access_cidrs) > 0 ? var.cluster_endpoint_public_access_cidrs : null
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.this.arn
    }
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy_attachment.cluster, aws_iam_role_policy.cluster_kms, aws_cloudwatch_log_group.eks]
}

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.name}-eks-node"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset(["AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly"])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

# IMDSv2 only, one hop (pods cannot reach the node's credentials), encrypted root volumes.
resource "aws_launch_template" "node" {
  for_each = var.node_groups

  name_prefix            = "${var.name}-${each.key}-"
  update_default_version = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = each.value.disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = aws_kms_key.this.arn
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-${each.key}" })
  }

  tags = local.tags
}

resource "aws_eks_node_group" "this" {
  for_each = var.node_groups

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = each.key
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = var.private_subnet_ids
  instance_types  = each.value.instance_types
  ami_type        = each.value.ami_type
  capacity_type   = each.value.capacity_type
  labels          = merge(each.value.labels, { "temporal-platform/node-group" = each.key })

  scaling_config {
    min_size     = each.value.min_size
    max_size     = each.value.max_size
    desired_size = each.value.desired_size
  }

  update_config {
    max_unavailable = 1
  }

  launch_template {
    id      = aws_launch_template.node[each.key].id
    version = aws_launch_template.node[each.key].latest_version
  }

  dynamic "taint" {
    for_each = each.value.taints
    content {
      key    = taint.value.key
      value  = taint.value.value
      effect = taint.value.effect
    }
  }

  tags = local.tags

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}

# ---------------------------------------------------------------------------- security groups
resource "aws_security_group" "postgres" {
  name        = "${var.name}-postgres"
  description = "PostgreSQL for Temporal: reachable only from the EKS cluster"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "postgres_from_cluster" {
  security_group_id            = aws_security_group.postgres.id
  description                  = "PostgreSQL from EKS pods and nodes"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

resource "aws_security_group" "opensearch" {
  count = local.os.enabled ? 1 : 0

  name        = "${var.name}-opensearch"
  description = "OpenSearch for Temporal visibility: HTTPS only from the EKS cluster"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "opensearch_from_cluster" {
  count = local.os.enabled ? 1 : 0

  security_group_id            = aws_security_group.opensearch[0].id
  description                  = "HTTPS from EKS pods and nodes"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

# ------------------------------------------------------------------------------- PostgreSQL
resource "aws_db_subnet_group" "this" {
  name        = var.name
  description = "Private subnets of ${var.name}"
  subnet_ids  = var.private_subnet_ids
  tags        = local.tags
}

resource "aws_db_parameter_group" "this" {
  name        = "${var.name}-postgres"
  family      = "postgres${split(".", local.pg.engine_version)[0]}"
  description = "Temporal PostgreSQL: TLS required, connection logging"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  tags = local.tags
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# Master password: generated here, not by RDS. With manage_master_user_password RDS rotates the
# password every 7 days in Secrets Manager, while the chart's admin Secret (the schema hook and
# the daemon create databases and the role with it) would keep the first value: the next
# schema hook after a rotation fails. Here one value feeds RDS, Secrets Manager and the
# Kubernetes Secret in the same apply; rotate by raising postgres.master_password_version.
resource "random_password" "master" {
  length  = 40
  special = false
  keepers = {
    version = local.pg.master_password_version
  }
}

resource "aws_secretsmanager_secret" "master" {
  #checkov:skip=CKV2_AWS_57:Rotated by Terraform (postgres.master_password_version) together with RDS and the Kubernetes Secret; a Lambda rotation would leave the Kubernetes Secret stale
  name        = "${var.name}/postgres-master"
  description = "Master user of the Temporal RDS instance (${local.pg.master_user}), for operators"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "master" {
  secret_id = aws_secretsmanager_secret.master.id
  secret_string = jsonencode({
    username = local.pg.master_user
    password = random_password.master.result
  })
}

# A new suffix per instance: every destroy leaves a final snapshot with its own name, so a
# second destroy (after a re-create) is not refused for an existing snapshot name.
resource "random_id" "final_snapshot" {
  byte_length = 4
  keepers = {
    identifier = var.name
  }
}

resource "aws_db_instance" "this" {
  #checkov:skip=CKV_AWS_293:deletion_protection comes from var.postgres (default true), which checkov cannot resolve through optional() defaults
  #checkov:skip=CKV_AWS_133:backup_retention_period comes from var.postgres (default 14 days), which checkov cannot resolve through optional() defaults
  #checkov:skip=CKV_AWS_157:multi_az comes from var.postgres (default true), which checkov cannot resolve through optional() defaults
  #checkov:skip=CKV_AWS_353:performance_insights_enabled comes from var.postgres (default true), which checkov cannot resolve through optional() defaults
  #checkov:skip=CKV_AWS_118:monitoring_interval comes from var.postgres (default 60 s), which checkov cannot resolve through optional() defaults
  identifier     = var.name
  engine         = "postgres"
  engine_version = local.pg.engine_version
  instance_class = local.pg.instance_class

  allocated_storage     = local.pg.allocated_storage_gib
  max_allocated_storage = local.pg.max_allocated_storage
  storage_type          = "gp3"
  iops                  = local.pg.iops
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.this.arn

  db_name  = local.pg.database
  username = local.pg.master_user
  password = random_password.master.result

  multi_az               = local.pg.multi_az
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.postgres.id]
  parameter_group_name   = aws_db_parameter_group.this.name
  publicly_accessible    = false
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true

  backup_retention_period   = local.pg.backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = local.pg.deletion_protection
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final-${random_id.final_snapshot.hex}"

  # Version policy: engine_version is the major version only ("16") and RDS applies minor
  # versions in the maintenance window. A pinned minor ("16.4") with auto upgrades would show a
  # downgrade diff after every automatic upgrade.
  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  performance_insights_enabled    = local.pg.performance_insights
  performance_insights_kms_key_id = local.pg.performance_insights ? aws_kms_key.this.arn : null
  monitoring_interval             = local.pg.monitoring_interval_sec
  monitoring_role_arn             = local.pg.monitoring_interval_sec > 0 ? aws_iam_role.rds_monitoring.arn : null

  tags = local.tags
}

# Password of Temporal's application role (created by temporal-bootstrap with the master
# credentials). Kept in Secrets Manager; the example copies it into a Kubernetes Secret.
resource "random_password" "temporal_db" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "temporal_db" {
  #checkov:skip=CKV2_AWS_57:The application role password is rotated by re-running temporal-bootstrap with a new value, which also restarts the server pods; a Lambda rotation would break running services
  name        = "${var.name}/temporal-db"
  description = "Password of the Temporal PostgreSQL application role (${local.pg.app_user})"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "temporal_db" {
  secret_id = aws_secretsmanager_secret.temporal_db.id
  secret_string = jsonencode({
    username = local.pg.app_user
    password = random_password.temporal_db.result
  })
}

# ------------------------------------------------------------------------------- OpenSearch
resource "aws_cloudwatch_log_group" "opensearch" {
  for_each = local.os.enabled ? toset(["application", "index-slow", "search-slow", "audit"]) : toset([])

  name              = "/aws/opensearch/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

data "aws_iam_policy_document" "opensearch_logs" {
  count = local.os.enabled ? 1 : 0

  statement {
    actions   = ["logs:PutLogEvents", "logs:CreateLogStream"]
    resources = [for g in aws_cloudwatch_log_group.opensearch : "${g.arn}:*"]
    principals {
      type        = "Service"
      identifiers = ["es.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "opensearch" {
  count = local.os.enabled ? 1 : 0

  policy_name     = "${var.name}-opensearch"
  policy_document = data.aws_iam_policy_document.opensearch_logs[0].json
}

resource "random_password" "opensearch_temporal" {
  count = local.os.enabled ? 1 : 0

  length           = 40
  special          = true
  override_special = "!#%*-_"
  min_upper        = 1
  min_lower        = 1
  min_numeric      = 1
  min_special      = 1
}

resource "aws_secretsmanager_secret" "opensearch_temporal" {
  #checkov:skip=CKV2_AWS_57:The Temporal OpenSearch user is rotated by an operator (new value here, the same value through the security API) together with the Kubernetes Secret; no Lambda rotation exists for OpenSearch internal users
  count = local.os.enabled ? 1 : 0

  name        = "${var.name}/opensearch-temporal"
  description = "Internal user Temporal uses on the visibility domain (not the master user)"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "opensearch_temporal" {
  count = local.os.enabled ? 1 : 0

  secret_id = aws_secretsmanager_secret.opensearch_temporal[0].id
  secret_string = jsonencode({
    username = local.os_temporal_user
    password = random_password.opensearch_temporal[0].result
  })
}

resource "random_password" "opensearch_master" {
  count = local.os.enabled ? 1 : 0

  length           = 40
  special          = true
  override_special = "!#%*-_"
  min_upper        = 1
  min_lower        = 1
  min_numeric      = 1
  min_special      = 1
}

resource "aws_secretsmanager_secret" "opensearch" {
  #checkov:skip=CKV2_AWS_57:The fine-grained-access master password is rotated by an operator together with the Kubernetes Secret Temporal reads; no Lambda rotation exists for OpenSearch internal users
  count = local.os.enabled ? 1 : 0

  name        = "${var.name}/opensearch"
  description = "Fine-grained access control master user of the Temporal visibility domain (operators only)"
  kms_key_id  = aws_kms_key.this.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "opensearch" {
  count = local.os.enabled ? 1 : 0

  secret_id = aws_secretsmanager_secret.opensearch[0].id
  secret_string = jsonencode({
    username = local.os.master_user
    password = random_password.opensearch_master[0].result
  })
}

data "aws_iam_policy_document" "opensearch_access" {
  #checkov:skip=CKV_AWS_283:Fine-grained access control with internal users (HTTP basic auth) needs an open domain policy; the domain is VPC-only behind a security group and FGAC authorizes every request
  count = local.os.enabled ? 1 : 0

  # Authorization is done by fine-grained access control; the resource policy only limits
  # requests to this account (and the domain is reachable only inside the VPC).
  statement {
    actions   = ["es:ESHttp*"]
    resources = ["arn:${local.partition}:es:${local.region}:${local.account_id}:domain/${var.name}/*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
  }
}

resource "aws_opensearch_domain" "this" {
  #checkov:skip=CKV_AWS_318:dedicated masters come from var.opensearch (default 3), which checkov cannot resolve through optional() defaults
  #checkov:skip=CKV2_AWS_59:dedicated masters come from var.opensearch (default 3), which checkov cannot resolve through optional() defaults
  #checkov:skip=CKV_AWS_317:AUDIT_LOGS is published through the dynamic log_publishing_options block, which checkov does not expand
  count = local.os.enabled ? 1 : 0

  domain_name    = var.name
  engine_version = local.os.engine_version

  cluster_config {
    instance_type            = local.os.instance_type
    instance_count           = local.os.instance_count
    dedicated_master_enabled = local.os.dedicated_master_count > 0
    dedicated_master_type    = local.os.dedicated_master_count > 0 ? local.os.dedicated_master_type : null
    dedicated_master_count   = local.os.dedicated_master_count > 0 ? local.os.dedicated_master_count : null
    zone_awareness_enabled   = true
    zone_awareness_config {
      availability_zone_count = local.os_zone_count
    }
  }

  ebs_options {
    ebs_enabled = true
    volume_type = "gp3"
    volume_size = local.os.volume_size_gib
  }

  vpc_options {
    subnet_ids         = slice(var.private_subnet_ids, 0, local.os_zone_count)
    security_group_ids = [aws_security_group.opensearch[0].id]
  }

  encrypt_at_rest {
    enabled    = true
    kms_key_id = aws_kms_key.this.arn
  }

  node_to_node_encryption {
    enabled = true
  }

  domain_endpoint_options {
    enforce_https       = true
    tls_security_policy = "Policy-Min-TLS-1-2-PFS-2023-10"
  }

  advanced_security_options {
    enabled                        = true
    anonymous_auth_enabled         = false
    internal_user_database_enabled = true
    master_user_options {
      master_user_name     = local.os.master_user
      master_user_password = random_password.opensearch_master[0].result
    }
  }

  access_policies = data.aws_iam_policy_document.opensearch_access[0].json

  dynamic "log_publishing_options" {
    for_each = {
      ES_APPLICATION_LOGS = "application"
      INDEX_SLOW_LOGS     = "index-slow"
      SEARCH_SLOW_LOGS    = "search-slow"
      AUDIT_LOGS          = "audit"
    }
    content {
      log_type                 = log_publishing_options.key
      cloudwatch_log_group_arn = aws_cloudwatch_log_group.opensearch[log_publishing_options.value].arn
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.os.instance_count % local.os_zone_count == 0
      error_message = "opensearch.instance_count (${local.os.instance_count}) must be a multiple of the zone count (${local.os_zone_count}, one per private subnet, at most 3): OpenSearch zone awareness spreads data nodes evenly over the zones."
    }
  }

  depends_on = [aws_cloudwatch_log_resource_policy.opensearch]
}
