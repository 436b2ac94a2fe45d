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
  description = "Private subnets of the VPC in at least two availability zones."
  type        = list(string)
}

variable "rendered_values_file" {
  description = "Values rendered by `temporal-bootstrap render helm-values` (shards, replicas, resources, worker pools, TLS)."
  type        = string
}

variable "rds_ca_bundle_file" {
  description = "PEM bundle of the RDS certificate authorities of the region (verify-full TLS to PostgreSQL)."
  type        = string
}

variable "node_groups" {
  description = "EKS managed node groups; see modules/aws variable node_groups."
  type = map(object({
    instance_types = list(string)
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
  default = {
    system = {
      instance_types = ["m7i.xlarge"]
      min_size       = 3
      max_size       = 6
      desired_size   = 3
    }
    history = {
      instance_types = ["r7i.2xlarge"]
      min_size       = 3
      max_size       = 6
      desired_size   = 3
      labels         = { "temporal-platform/workload" = "history" }
    }
  }
}

variable "tags" {
  description = "Tags applied to every AWS resource."
  type        = map(string)
  default     = {}
}
