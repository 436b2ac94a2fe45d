output "frontend_address" {
  description = "In-cluster gRPC address of the Temporal frontend."
  value       = module.temporal_platform.frontend_address
}

output "release_name" {
  description = "Name of the Helm release."
  value       = module.temporal_platform.release_name
}
