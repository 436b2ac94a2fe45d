variable "release_name" {
  description = "Helm release name of the platform."
  type        = string
  default     = "temporal"
}

variable "namespace" {
  description = "Namespace the platform is installed into."
  type        = string
  default     = "temporal"
}

variable "create_namespace" {
  description = "Create the namespace (with the restricted Pod Security level) instead of expecting it."
  type        = bool
  default     = true
}

variable "chart_path" {
  description = "Path or URL of the temporal-platform chart. Defaults to the chart in this repository."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "Chart version when chart_path points at a repository or OCI reference; null for a local path."
  type        = string
  default     = null
}

variable "values" {
  description = "Values documents (YAML strings), lowest precedence first: the output of `temporal-bootstrap render helm-values`, then overrides."
  type        = list(string)
  default     = []
}

variable "existing_secrets" {
  description = "Kubernetes Secrets to create before the release (name => string data), e.g. database passwords read from a secret manager. Leave empty when the Secrets exist already."
  type        = map(map(string))
  default     = {}
  sensitive   = true
}

variable "timeout_seconds" {
  description = "Helm timeout. The schema hook may rewrite large visibility tables (hours on big clusters)."
  type        = number
  default     = 14400
}

variable "atomic" {
  description = "Roll back the release when the install or upgrade fails."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels added to the namespace and the Secrets this module creates."
  type        = map(string)
  default     = {}
}

variable "prerequisite_charts" {
  description = "Charts installed before the platform, name => chart: KEDA (worker pool autoscaling), cert-manager (certManager.enabled), kube-prometheus-stack (ServiceMonitor/PrometheusRule CRDs). Empty when the cluster already has them."
  type = map(object({
    repository = string
    chart      = string
    version    = string
    namespace  = string
    values     = optional(list(string), [])
  }))
  default = {}
}
