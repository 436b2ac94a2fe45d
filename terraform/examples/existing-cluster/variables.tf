variable "kubeconfig_path" {
  description = "Path of the kubeconfig of the existing cluster."
  type        = string
  default     = "~/.kube/config"
}

variable "kubeconfig_context" {
  description = "Context of the kubeconfig to use; null uses the current context."
  type        = string
  default     = null
}

variable "rendered_values_file" {
  description = "Values rendered by `temporal-bootstrap render helm-values -f platform.yaml --out DIR` (DIR/values.yaml)."
  type        = string
}

variable "override_values" {
  description = "Extra chart values (YAML) applied over the rendered ones, e.g. node selectors."
  type        = string
  default     = ""
}

variable "namespace" {
  description = "Namespace of the platform; its Secrets (persistence, visibility) must exist already."
  type        = string
  default     = "temporal"
}
