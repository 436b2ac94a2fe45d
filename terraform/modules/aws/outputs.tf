output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Endpoint of the EKS API server."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64 CA certificate of the EKS API server."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "cluster_security_group_id" {
  description = "Security group EKS attaches to the control plane and managed nodes."
  value       = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

output "node_role_arn" {
  description = "IAM role of the managed node groups."
  value       = aws_iam_role.node.arn
}

output "kms_key_arn" {
  description = "ARN of the platform KMS key."
  value       = aws_kms_key.this.arn
}

output "postgres_address" {
  description = "Hostname of the RDS PostgreSQL instance."
  value       = aws_db_instance.this.address
}

output "postgres_port" {
  description = "Port of the RDS PostgreSQL instance."
  value       = aws_db_instance.this.port
}

output "postgres_master_secret_arn" {
  description = "Secrets Manager ARN of the RDS-managed master credentials (used by temporal-bootstrap to create databases and the role)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "temporal_db_secret_arn" {
  description = "Secrets Manager ARN of the Temporal application role credentials."
  value       = aws_secretsmanager_secret.temporal_db.arn
}

output "opensearch_endpoint" {
  description = "HTTPS endpoint of the OpenSearch domain, or null when disabled."
  value       = local.os.enabled ? "https://${aws_opensearch_domain.this[0].endpoint}:443" : null
}

output "opensearch_secret_arn" {
  description = "Secrets Manager ARN of the OpenSearch fine-grained access user, or null when disabled."
  value       = local.os.enabled ? aws_secretsmanager_secret.opensearch[0].arn : null
}

output "helm_values" {
  description = "Chart values for the managed datastores, merged over the output of `temporal-bootstrap render helm-values`. Secret names are the ones the aws-complete example creates."
  value = {
    persistence = {
      postgres = {
        host           = aws_db_instance.this.address
        port           = aws_db_instance.this.port
        database       = local.pg.database
        user           = local.pg.app_user
        existingSecret = "temporal-postgres"
        admin = {
          enabled        = true
          user           = local.pg.master_user
          existingSecret = "temporal-postgres-admin"
        }
        tls = {
          mode     = "verify-full"
          caSecret = "temporal-rds-ca"
        }
      }
    }
    visibility = local.os.enabled ? {
      type = "elasticsearch"
      elasticsearch = {
        url            = "https://${aws_opensearch_domain.this[0].endpoint}:443"
        flavor         = "opensearch"
        username       = local.os.master_user
        existingSecret = "temporal-opensearch"
      }
      } : {
      type = "postgres"
    }
  }
}
