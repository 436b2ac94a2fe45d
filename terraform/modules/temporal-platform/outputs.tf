output "release_name" {
  description = "Name of the Helm release."
  value       = helm_release.this.name
}

output "namespace" {
  description = "Namespace of the release."
  value       = helm_release.this.namespace
}

output "chart_version" {
  description = "Version of the installed chart."
  value       = helm_release.this.metadata.version
}

output "frontend_address" {
  description = "In-cluster gRPC address of the Temporal frontend."
  value       = "${var.release_name}-temporal-platform-frontend.${var.namespace}.svc:7233"
}

output "secret_names" {
  description = "Names of the Secrets this module created."
  value       = [for s in kubernetes_secret_v1.existing : s.metadata[0].name]
}
