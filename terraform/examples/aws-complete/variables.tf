variable "region" {
  description = "AWS region of the platform."
  type        = string
}

variable "name" {
  description = "Name prefix of every resource."
  type        = string
  default     = "temporal-prod"
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the VPC, one per availability zone (three for three OpenSearch data nodes)."
  type        = list(string)
}

variable "rendered_values_file" {
  description = "Values rendered by `temporal-bootstrap render helm-values` (shards, replicas, resources, worker pools, TLS)."
  type        = string
}

variable "placement_values_file" {
  description = "placement-values.yaml rendered by `temporal-bootstrap render terraform-vars`: history pods on the history node group, GPU pools on the GPU group."
  type        = string
  default     = "placement-values.yaml"
}

variable "secret_names_file" {
  description = "secret-names.yaml of the chart (role: name); null reads helm/temporal-platform/secret-names.yaml of this repository."
  type        = string
  default     = null
}

variable "rds_ca_bundle_file" {
  description = "PEM bundle of the RDS certificate authorities of the region (verify-full TLS to PostgreSQL)."
  type        = string
}

variable "opensearch_ca_bundle_file" {
  description = "PEM of the CA of the OpenSearch HTTPS certificate (Amazon Root CA 1 from https://www.amazontrust.com/repository/)."
  type        = string
}

variable "grafana_token" {
  description = "Grafana service-account token for the dashboards step; null when you create its Secret yourself (or observability.grafana is not set)."
  type        = string
  default     = null
  sensitive   = true
}

variable "cert_manager" {
  description = "Install cert-manager even though the rendered values do not enable certManager (e.g. enabled in an override values file)."
  type        = bool
  default     = false
}

variable "prerequisite_versions" {
  description = "Chart versions of the operators installed before the platform (only those the values need)."
  type = object({
    kube_prometheus_stack = optional(string, "77.5.0")
    keda                  = optional(string, "2.17.2")
    cert_manager          = optional(string, "v1.18.2")
    nvidia_device_plugin  = optional(string, "0.17.4")
  })
  default = {}
}

variable "node_groups" {
  description = "EKS managed node groups: `node_groups` of node-groups.auto.tfvars.json, written by `temporal-bootstrap render terraform-vars` into this directory (Terraform loads it by itself). See modules/aws variable node_groups."
  type = map(object({
    instance_types = list(string)
    ami_type       = optional(string, "AL2023_x86_64_STANDARD")
    min_size       = number
    max_size       = number
    desired_size   = number
    disk_size_gib  = optional(number, 50)
    capacity_type  = optional(string, "ON_DEMAND")
    labels         = optional(map(string), {})
    taints = optional(list(object({
      key    = string
      value  = optional(string)
      effect = string
    })), [])
  }))
}

variable "tags" {
  description = "Tags applied to every AWS resource."
  type        = map(string)
  default     = {}
}
