output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.aws.cluster_name
}

output "frontend_address" {
  description = "In-cluster gRPC address of the Temporal frontend."
  value       = module.temporal_platform.frontend_address
}

output "postgres_address" {
  description = "Hostname of the RDS PostgreSQL instance."
  value       = module.aws.postgres_address
}

output "opensearch_endpoint" {
  description = "HTTPS endpoint of the OpenSearch domain."
  value       = module.aws.opensearch_endpoint
}
