variable "name" {
  description = "Name prefix of every resource (e.g. temporal-prod-eu1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,27}$", var.name))
    error_message = "name must be 2-28 lowercase letters, digits or dashes, starting with a letter (OpenSearch domain names are limited to 28 characters)."
  }
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "ID of the existing VPC the platform runs in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (at least two, in different availability zones) for nodes, RDS and OpenSearch."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "At least two private subnets in different availability zones are required."
  }
}

variable "cluster_version" {
  description = "Kubernetes version of the EKS cluster."
  type        = string
  default     = "1.33"
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public EKS API endpoint; empty keeps the endpoint private."
  type        = list(string)
  default     = []
}

variable "node_groups" {
  description = "EKS managed node groups, name => settings: the `node_groups` of `temporal-bootstrap render terraform-vars` (node-groups.auto.tfvars.json), sized from the capacity plan."
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

  validation {
    condition     = length(var.node_groups) > 0
    error_message = "node_groups is empty: render it with `temporal-bootstrap render terraform-vars -f platform.yaml -o DIR`."
  }
}

variable "secret_names" {
  description = "Kubernetes Secret names by role (postgres, postgres_admin, postgres_ca, elasticsearch, elasticsearch_ca, ...): yamldecode of helm/temporal-platform/secret-names.yaml."
  type        = map(string)

  validation {
    condition     = alltrue([for role in ["postgres", "postgres_admin", "postgres_ca", "elasticsearch", "elasticsearch_ca"] : contains(keys(var.secret_names), role)])
    error_message = "secret_names must name the Secrets of the roles postgres, postgres_admin, postgres_ca, elasticsearch and elasticsearch_ca (helm/temporal-platform/secret-names.yaml)."
  }
}

variable "postgres" {
  description = "RDS PostgreSQL settings for Temporal persistence and SQL visibility."
  type = object({
    engine_version          = optional(string, "16")
    master_password_version = optional(number, 1)
    instance_class          = optional(string, "db.r7g.large")
    allocated_storage_gib   = optional(number, 100)
    max_allocated_storage   = optional(number, 1000)
    iops                    = optional(number)
    multi_az                = optional(bool, true)
    backup_retention_days   = optional(number, 14)
    deletion_protection     = optional(bool, true)
    database                = optional(string, "temporal")
    app_user                = optional(string, "temporal")
    master_user             = optional(string, "temporal_admin")
    performance_insights    = optional(bool, true)
    monitoring_interval_sec = optional(number, 60)
  })
  default = {}

  validation {
    condition     = can(regex("^[0-9]+$", var.postgres.engine_version))
    error_message = "postgres.engine_version is the major version only (e.g. \"16\"): RDS applies minor versions itself (auto_minor_version_upgrade), and a pinned minor would drift after each one."
  }
}

variable "opensearch" {
  description = "Amazon OpenSearch settings for visibility; set enabled = false to use SQL visibility."
  type = object({
    enabled                = optional(bool, true)
    engine_version         = optional(string, "OpenSearch_2.19")
    instance_type          = optional(string, "r7g.large.search")
    instance_count         = optional(number, 3)
    dedicated_master_type  = optional(string, "m7g.large.search")
    dedicated_master_count = optional(number, 3)
    volume_size_gib        = optional(number, 100)
    master_user            = optional(string, "admin")
    temporal_user          = optional(string, "temporal")
  })
  default = {}
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the platform KMS key is deleted."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (EKS control plane, OpenSearch)."
  type        = number
  default     = 365
}
