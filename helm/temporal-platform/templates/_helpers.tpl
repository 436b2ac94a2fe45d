{{/*
Naming, labels, images, security contexts and the TLS / secret wiring shared by all templates.
*/}}

{{- define "tp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of a component's objects: <fullname>-<component>, at most 63 characters. */}}
{{- define "tp.componentName" -}}
{{- printf "%s-%s" (include "tp.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tp.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of a component. Call with (dict "root" $ "component" "frontend"). */}}
{{- define "tp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full label set of a component. */}}
{{- define "tp.labels" -}}
{{ include "tp.selectorLabels" . }}
helm.sh/chart: {{ include "tp.chartLabel" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: temporal-platform
app.kubernetes.io/version: {{ .root.Values.server.version | quote }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels used by the NetworkPolicies: a Temporal server pod, and a pod allowed to call the frontend. */}}
{{- define "tp.serverRoleLabel" -}}
temporal-platform/role: server
{{- end -}}
{{- define "tp.frontendClientLabel" -}}
temporal-platform/frontend-client: "true"
{{- end -}}

{{/* image reference: repository[:tag][@digest]. Call with (dict "image" .Values.x.image "default" "1.2.3"). */}}
{{- define "tp.image" -}}
{{- $tag := default .default .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The bootstrap image: no public one exists, so the reference is required. */}}
{{- define "tp.bootstrapImage" -}}
{{- $_ := required "bootstrap.image.repository is required: build the image from the repository's Dockerfile, push it to your registry and set bootstrap.image.repository (README: Publishing the bootstrap image)" .Values.bootstrap.image.repository -}}
{{- include "tp.image" (dict "image" .Values.bootstrap.image "default" .Chart.Version) -}}
{{- end -}}

{{/* Pod-level security context (non-root, RuntimeDefault seccomp). */}}
{{- define "tp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context: read-only root, no privilege escalation, no capabilities. */}}
{{- define "tp.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tp.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Topology spread over zones and nodes for a component. Call with (dict "root" $ "component" "history"). */}}
{{- define "tp.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ .root.Values.topologySpread.zoneWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "tp.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ .root.Values.topologySpread.hostWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "tp.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- TLS */}}

{{/* "bootstrap" when the bootstrap issues certificates into Secrets, "cert-manager", or "" without TLS. */}}
{{- define "tp.tlsMode" -}}
{{- if .Values.tls.enabled -}}
{{- if .Values.certManager.enabled -}}cert-manager{{- else -}}bootstrap{{- end -}}
{{- end -}}
{{- end -}}

{{/* Frontend service DNS name (in-cluster). */}}
{{- define "tp.frontendHost" -}}
{{- printf "%s.%s.svc" (include "tp.componentName" (dict "root" . "component" "frontend")) .Release.Namespace -}}
{{- end -}}

{{- define "tp.frontendAddress" -}}
{{- printf "%s:%d" (include "tp.frontendHost" .) (int .Values.server.ports.frontend.grpc) -}}
{{- end -}}

{{/* Server name clients verify on the frontend certificate. */}}
{{- define "tp.frontendServerName" -}}
{{- default (include "tp.frontendHost" .) .Values.tls.frontend.serverName -}}
{{- end -}}

{{/* DNS names on the frontend certificate: the service names plus values.tls.frontend.dnsNames. */}}
{{- define "tp.frontendDnsNames" -}}
{{- $svc := include "tp.componentName" (dict "root" . "component" "frontend") -}}
{{- $names := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) -}}
{{- if .Values.server.internalFrontend.enabled -}}
{{- $isvc := include "tp.componentName" (dict "root" . "component" "internal-frontend") -}}
{{- $names = concat $names (list $isvc (printf "%s.%s.svc" $isvc .Release.Namespace)) -}}
{{- end -}}
{{- if .Values.tls.frontend.serverName -}}
{{- $names = append $names .Values.tls.frontend.serverName -}}
{{- end -}}
{{- toJson (uniq (concat $names .Values.tls.frontend.dnsNames)) -}}
{{- end -}}

{{/* Name every internode certificate carries and every internode client verifies. */}}
{{- define "tp.internodeServerName" -}}
{{- printf "%s.%s.svc" (include "tp.componentName" (dict "root" . "component" "internode")) .Release.Namespace -}}
{{- end -}}

{{/* Secret name of a worker pool's client certificate. Call with (dict "root" $ "pool" $pool). */}}
{{- define "tp.poolClientSecret" -}}
{{- default (printf "%s-%s" .root.Values.tls.secretPrefix .pool.name) .pool.clientSecret -}}
{{- end -}}

{{/*
Every certificate Secret this release uses, as JSON: {"frontend": "...", "internode": "...",
"clients": {"<client name>": "<secret>"}}. All hold tls.crt, tls.key and ca.crt.
*/}}
{{- define "tp.certSecrets" -}}
{{- $p := .Values.tls.secretPrefix -}}
{{- $clients := dict "temporal-bootstrap" (printf "%s-bootstrap" $p) -}}
{{- if .Values.web.enabled -}}
{{- $_ := set $clients "temporal-web" (printf "%s-web" $p) -}}
{{- end -}}
{{- range .Values.workerPools -}}
{{- $_ := set $clients .name (include "tp.poolClientSecret" (dict "root" $ "pool" .)) -}}
{{- end -}}
{{- toJson (dict "ca" (printf "%s-ca" $p) "frontend" (printf "%s-frontend" $p) "internode" (printf "%s-internode" $p) "clients" $clients) -}}
{{- end -}}

{{/* Volume mount path of a certificate Secret. */}}
{{- define "tp.tlsDir" -}}/etc/temporal/tls{{- end -}}

{{/* ---------------------------------------------------------------- persistence */}}

{{- define "tp.pgAddress" -}}
{{- printf "%s:%d" .Values.persistence.postgres.host (int .Values.persistence.postgres.port) -}}
{{- end -}}

{{/* TLS block of a Temporal SQL datastore, from persistence.postgres.tls. */}}
{{- define "tp.sqlTls" -}}
{{- $t := .Values.persistence.postgres.tls -}}
{{- if ne $t.mode "disable" -}}
tls:
  enabled: true
  {{- if eq $t.mode "verify-full" }}
  caFile: /etc/temporal/db-tls/persistence/{{ $t.caKey }}
  enableHostVerification: true
  serverName: {{ default .Values.persistence.postgres.host $t.serverName | quote }}
  {{- else }}
  enableHostVerification: false
  {{- end }}
{{- end -}}
{{- end -}}

{{/* Environment shared by every Temporal server container: pod IP and datastore passwords. */}}
{{- define "tp.serverEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: TEMPORAL_PERSISTENCE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.persistence.postgres.existingSecret | quote }}
      key: {{ .Values.persistence.postgres.passwordKey | quote }}
{{- if and (eq .Values.visibility.type "elasticsearch") .Values.visibility.elasticsearch.username }}
- name: TEMPORAL_VISIBILITY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.visibility.elasticsearch.existingSecret | quote }}
      key: {{ .Values.visibility.elasticsearch.passwordKey | quote }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- bootstrap */}}

{{- define "tp.bootstrapSecretsDir" -}}/etc/temporal-bootstrap/secrets{{- end -}}
{{- /* The pki volume is mounted one level up: the bootstrap creates pki.dir itself with mode
0700 (it refuses a key directory that group or others can reach, as an emptyDir is). */ -}}
{{- define "tp.bootstrapStateDir" -}}/var/lib/temporal-bootstrap{{- end -}}
{{- define "tp.bootstrapPkiDir" -}}{{ include "tp.bootstrapStateDir" . }}/pki{{- end -}}
{{- define "tp.bootstrapClientTlsDir" -}}/etc/temporal-bootstrap/tls/client{{- end -}}
{{- define "tp.bootstrapSchemaDir" -}}/etc/temporal-bootstrap/schema{{- end -}}

{{/*
Init container that copies the release's schema folder out of Temporal's admin-tools image into
the `schema` emptyDir (the image carries it at /etc/temporal/schema; cp keeps no ownership, so
the files belong to the pod's user). No shell: plain cp with arguments.
*/}}
{{- define "tp.schemaInitContainer" -}}
- name: copy-schema
  image: {{ include "tp.image" (dict "image" .Values.bootstrap.schema.image "default" .Values.server.version) | quote }}
  imagePullPolicy: {{ .Values.bootstrap.schema.image.pullPolicy }}
  command: ["cp", "-R", "/etc/temporal/schema/.", "{{ include "tp.bootstrapSchemaDir" . }}/"]
  resources:
    requests: { cpu: 10m, memory: 16Mi }
    limits: { memory: 64Mi }
  securityContext:
    {{- include "tp.containerSecurityContext" .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: schema
      mountPath: {{ include "tp.bootstrapSchemaDir" . }}
{{- end -}}
{{- define "tp.schemaVolume" -}}
- name: schema
  emptyDir:
    sizeLimit: 32Mi
{{- end -}}
{{- define "tp.schemaMount" -}}
- name: schema
  mountPath: {{ include "tp.bootstrapSchemaDir" . }}
  readOnly: true
{{- end -}}

{{/*
platform.yaml for the bootstrap: bootstrap.platform plus the wiring the chart owns (cluster,
persistence, visibility, pki, capacity.history_shards). Secrets are `file:` references to
mounted existing Secrets, never values.
*/}}
{{- define "tp.platformYaml" -}}
{{- $v := .Values -}}
{{- $sd := include "tp.bootstrapSecretsDir" . -}}
{{- $pg := $v.persistence.postgres -}}
{{- $p := deepCopy $v.bootstrap.platform -}}
{{- $frontend := dict "address" (include "tp.frontendAddress" .) "http_address" (printf "%s:%d" (include "tp.frontendHost" .) (int $v.server.ports.frontend.http)) -}}
{{- if $v.tls.enabled -}}
{{- $cd := include "tp.bootstrapClientTlsDir" . -}}
{{- $_ := set $frontend "tls" (dict "ca" (printf "%s/ca.crt" $cd) "cert" (printf "%s/tls.crt" $cd) "key" (printf "%s/tls.key" $cd) "server_name" (include "tp.frontendServerName" .)) -}}
{{- end -}}
{{- $cluster := dict "name" $v.clusterName "temporal_version" $v.server.version "environment" $v.environment "frontend" $frontend -}}
{{- with $v.server.authorization -}}
{{- if .enabled -}}
{{- $auth := dict "jwt_key_sources" .jwtKeySources "key_refresh_interval" .keyRefreshInterval "permissions_claim" .permissionsClaim "token" (printf "file:%s/bootstrap-token/token" $sd) -}}
{{- with .audience -}}{{- $_ := set $auth "audience" . -}}{{- end -}}
{{- $_ := set $cluster "authorization" $auth -}}
{{- end -}}
{{- end -}}
{{- $_ := set $p "cluster" $cluster -}}
{{- $capacity := deepCopy (default dict $p.capacity) -}}
{{- $_ := set $capacity "history_shards" (int $v.server.numHistoryShards) -}}
{{- $_ := set $p "capacity" $capacity -}}
{{- $pgc := dict "host" $pg.host "port" (int $pg.port) "database" $pg.database "user" $pg.user "password" (printf "file:%s/persistence/%s" $sd $pg.passwordKey) -}}
{{- if $pg.admin.enabled -}}
{{- $_ := set $pgc "admin" (dict "user" $pg.admin.user "database" $pg.admin.database "password" (printf "file:%s/persistence-admin/%s" $sd $pg.admin.passwordKey)) -}}
{{- end -}}
{{- $pgtls := dict "mode" $pg.tls.mode -}}
{{- if eq $pg.tls.mode "verify-full" -}}
{{- $_ := set $pgtls "ca" (printf "%s/persistence-ca/%s" $sd $pg.tls.caKey) -}}
{{- end -}}
{{- $_ := set $pgc "tls" $pgtls -}}
{{- $_ := set $pgc "schema_dir" (printf "%s/postgresql/v12" (include "tp.bootstrapSchemaDir" .)) -}}
{{- $_ := set $p "persistence" (dict "postgres" $pgc) -}}
{{- if eq $v.visibility.type "postgres" -}}
{{- $_ := set $p "visibility" (dict "postgres" (dict "database" $v.visibility.postgres.database)) -}}
{{- else -}}
{{- $es := $v.visibility.elasticsearch -}}
{{- $esc := dict "url" $es.url "flavor" $es.flavor "index" $es.index -}}
{{- if $es.username -}}
{{- $_ := set $esc "auth" (dict "basic" (dict "username" $es.username "password" (printf "file:%s/visibility/%s" $sd $es.passwordKey))) -}}
{{- end -}}
{{- if $es.tls.caSecret -}}
{{- $_ := set $esc "ca" (printf "%s/visibility-ca/%s" $sd $es.tls.caKey) -}}
{{- end -}}
{{- $_ := set $esc "schema_dir" (printf "%s/elasticsearch" (include "tp.bootstrapSchemaDir" .)) -}}
{{- $_ := set $p "visibility" (dict "elasticsearch" $esc) -}}
{{- end -}}
{{- if eq (include "tp.tlsMode" .) "bootstrap" -}}
{{- $certs := include "tp.certSecrets" . | fromJson -}}
{{- $clients := list -}}
{{- range $name, $_ := $certs.clients -}}
{{- $clients = append $clients (dict "name" $name) -}}
{{- end -}}
{{- $pki := dict "dir" (include "tp.bootstrapPkiDir" .) "ca" (dict "validity" (printf "%dd" (int $v.tls.validity.caDays))) "renew_before" (printf "%dd" (int $v.tls.validity.renewBeforeDays)) -}}
{{- $_ := set $pki "frontend" (dict "dns_names" (include "tp.frontendDnsNames" . | fromJsonArray) "validity" (printf "%dd" (int $v.tls.validity.leafDays))) -}}
{{- $_ := set $pki "internode" (dict "dns_names" (list (include "tp.internodeServerName" .)) "validity" (printf "%dd" (int $v.tls.validity.leafDays))) -}}
{{- $_ := set $pki "clients" $clients -}}
{{- $_ := set $pki "kubernetes_secrets" (dict "namespace" .Release.Namespace "ca" $certs.ca "frontend" $certs.frontend "internode" $certs.internode "clients" $certs.clients) -}}
{{- $_ := set $p "pki" $pki -}}
{{- end -}}
{{- toYaml $p -}}
{{- end -}}

{{/* The Secret names of secret-names.yaml, the list the render, install.sh and Terraform read. */}}
{{- define "tp.secretNames" -}}
{{- .Files.Get "secret-names.yaml" | fromYaml | toJson -}}
{{- end -}}

{{/* The bootstrap's token for an authorizing frontend (server.authorization). */}}
{{- define "tp.bootstrapTokenVolume" -}}
{{- if .Values.server.authorization.enabled }}
- name: secret-bootstrap-token
  secret:
    secretName: {{ (include "tp.secretNames" . | fromJson).bootstrap_token }}
    defaultMode: 0400
    items:
      - key: token
        path: token
{{- end }}
{{- end -}}
{{- define "tp.bootstrapTokenMount" -}}
{{- if .Values.server.authorization.enabled }}
- name: secret-bootstrap-token
  mountPath: {{ include "tp.bootstrapSecretsDir" . }}/bootstrap-token
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes with the existing Secrets the bootstrap reads (mounted as files, never env). */}}
{{- define "tp.bootstrapSecretVolumes" -}}
{{- $pg := .Values.persistence.postgres -}}
{{- $es := .Values.visibility.elasticsearch -}}
- name: secret-persistence
  secret:
    secretName: {{ $pg.existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ $pg.passwordKey }}
        path: {{ $pg.passwordKey }}
{{- if $pg.admin.enabled }}
- name: secret-persistence-admin
  secret:
    secretName: {{ required "persistence.postgres.admin.existingSecret is required when admin.enabled" $pg.admin.existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ $pg.admin.passwordKey }}
        path: {{ $pg.admin.passwordKey }}
{{- end }}
{{- if eq $pg.tls.mode "verify-full" }}
- name: secret-persistence-ca
  secret:
    secretName: {{ $pg.tls.caSecret }}
    defaultMode: 0440
    items:
      - key: {{ $pg.tls.caKey }}
        path: {{ $pg.tls.caKey }}
{{- end }}
{{- if eq .Values.visibility.type "elasticsearch" }}
{{- if $es.username }}
- name: secret-visibility
  secret:
    secretName: {{ $es.existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ $es.passwordKey }}
        path: {{ $es.passwordKey }}
{{- end }}
{{- if $es.tls.caSecret }}
- name: secret-visibility-ca
  secret:
    secretName: {{ $es.tls.caSecret }}
    defaultMode: 0440
    items:
      - key: {{ $es.tls.caKey }}
        path: {{ $es.tls.caKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Extra Secrets of the daemon (bootstrap.extraSecrets), as files. */}}
{{- define "tp.bootstrapExtraSecretVolumes" -}}
{{- range .Values.bootstrap.extraSecrets }}
- name: extra-{{ .name }}
  secret:
    secretName: {{ .existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ .key }}
        path: {{ .key }}
{{- end }}
{{- end -}}

{{- define "tp.bootstrapExtraSecretMounts" -}}
{{- $sd := include "tp.bootstrapSecretsDir" . -}}
{{- range .Values.bootstrap.extraSecrets }}
- name: extra-{{ .name }}
  mountPath: {{ $sd }}/extra/{{ .name }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tp.bootstrapSecretMounts" -}}
{{- $sd := include "tp.bootstrapSecretsDir" . -}}
{{- $pg := .Values.persistence.postgres -}}
{{- $es := .Values.visibility.elasticsearch -}}
- name: secret-persistence
  mountPath: {{ $sd }}/persistence
  readOnly: true
{{- if $pg.admin.enabled }}
- name: secret-persistence-admin
  mountPath: {{ $sd }}/persistence-admin
  readOnly: true
{{- end }}
{{- if eq $pg.tls.mode "verify-full" }}
- name: secret-persistence-ca
  mountPath: {{ $sd }}/persistence-ca
  readOnly: true
{{- end }}
{{- if eq .Values.visibility.type "elasticsearch" }}
{{- if $es.username }}
- name: secret-visibility
  mountPath: {{ $sd }}/visibility
  readOnly: true
{{- end }}
{{- if $es.tls.caSecret }}
- name: secret-visibility-ca
  mountPath: {{ $sd }}/visibility-ca
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "tp.bootstrapEnv" -}}
- name: RUST_LOG
  value: info
{{- range .Values.bootstrap.extraEnv }}
- name: {{ .name | quote }}
  value: {{ .value | quote }}
{{- end }}
{{- end -}}

{{/*
checkov skip annotations of a workload, each with its reason, emitted only when the condition
that triggers the check holds. Call with (dict "image" <image values> "resources" <resources>
"envSecrets" <bool> "codecTokens" <bool> "token" <bool>).
*/}}
{{- define "tp.checkovSkips" -}}
{{- $skips := list -}}
{{- if not (and .resources .resources.limits (hasKey .resources.limits "cpu")) -}}
{{- $skips = append $skips "CKV_K8S_11=No CPU limit by design: CFS throttling adds tail latency to Temporal services and workers; CPU requests and memory limits are set" -}}
{{- end -}}
{{- if ne (default "IfNotPresent" .image.pullPolicy) "Always" -}}
{{- $skips = append $skips "CKV_K8S_15=Images are pinned (release tag or digest) and air-gapped nodes run preloaded images, so IfNotPresent; set image.pullPolicy to Always to change" -}}
{{- end -}}
{{- if not .image.digest -}}
{{- $skips = append $skips "CKV_K8S_43=Pinned by release tag; set image.digest (rendered by temporal-bootstrap when known) to pin by digest" -}}
{{- end -}}
{{- if .codecTokens -}}
{{- $skips = append $skips "CKV_K8S_35=The codec server's bearer tokens are `env:` secret references by design (secretKeyRef from existing Secrets); its encryption keys are mounted as 0400 files" -}}
{{- else if .envSecrets -}}
{{- $skips = append $skips "CKV_K8S_35=Temporal server config takes datastore passwords only as values; they are read from env (secretKeyRef) by the config template and never written to disk or the ConfigMap" -}}
{{- end -}}
{{- if .token -}}
{{- $skips = append $skips "CKV_K8S_38=The bootstrap daemon writes the certificate Secrets through the API; its Role is limited to those Secrets by name" -}}
{{- end -}}
{{- range $i, $s := $skips }}
checkov.io/skip{{ add1 $i }}: {{ $s | quote }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- codec server */}}

{{- define "tp.codecDir" -}}/etc/temporal-codec{{- end -}}

{{/*
platform.yaml of the codec server: the `codec:` section rendered from .Values.codec, plus the
sections the config model requires (cluster without client TLS, capacity, persistence,
visibility, namespaces) copied from the bootstrap's platform.yaml. codec-server reads only
`codec:`; the persistence secret references in the copied sections are never read by it.
Keys are `file:` paths of the mounted keys Secret; tokens are `env:` references.
*/}}
{{- define "tp.codecPlatformYaml" -}}
{{- $c := .Values.codec -}}
{{- $dir := include "tp.codecDir" . -}}
{{- $full := include "tp.platformYaml" . | fromYaml -}}
{{- $cluster := deepCopy $full.cluster -}}
{{- $_ := set $cluster "frontend" (omit $cluster.frontend "tls") -}}
{{- $p := dict "cluster" $cluster "capacity" $full.capacity "persistence" $full.persistence "visibility" $full.visibility "namespaces" $full.namespaces -}}
{{- $keys := list -}}
{{- $kmsKind := $c.kms.kind | default "file" -}}
{{- range $c.keys.items -}}
{{- if .wrapped -}}
{{- if eq $kmsKind "file" -}}
{{- fail (printf "codec.keys.items: key %s is wrapped: set codec.kms.kind to vault-transit or aws-kms" .id) -}}
{{- end -}}
{{- $keys = append $keys (dict "id" .id "wrapped" (printf "file:%s/keys/%s" $dir .key) "current" (default false .current)) -}}
{{- else -}}
{{- $keys = append $keys (dict "id" .id "secret" (printf "file:%s/keys/%s" $dir .key) "current" (default false .current)) -}}
{{- end -}}
{{- end -}}
{{- $access := dict -}}
{{- $tokens := list -}}
{{- range $i, $t := $c.tokens -}}
{{- $r := dict "name" $t.name "token" (printf "env:CODEC_TOKEN_%d" $i) -}}
{{- if $t.decode }}{{- $_ := set $r "decode" $t.decode -}}{{- end -}}
{{- if $t.encode }}{{- $_ := set $r "encode" $t.encode -}}{{- end -}}
{{- $tokens = append $tokens $r -}}
{{- end -}}
{{- if $tokens -}}
{{- $_ := set $access "tokens" $tokens -}}
{{- end -}}
{{- if $c.jwt.enabled -}}
{{- $j := $c.jwt -}}
{{- $_ := required "codec.jwt.jwksConfigMap is required when codec.jwt.enabled" $j.jwksConfigMap -}}
{{- $rules := list -}}
{{- range $j.rules -}}
{{- $r := dict "claim" .claim "value" .value -}}
{{- if .decode }}{{- $_ := set $r "decode" .decode -}}{{- end -}}
{{- if .encode }}{{- $_ := set $r "encode" .encode -}}{{- end -}}
{{- $rules = append $rules $r -}}
{{- end -}}
{{- $_ := set $access "jwt" (dict "jwks_file" (printf "%s/jwks/%s" $dir $j.jwksKey) "issuer" $j.issuer "audience" $j.audience "caller_claim" $j.callerClaim "rules" $rules) -}}
{{- end -}}
{{- if not $access -}}
{{- fail "codec: configure codec.tokens or codec.jwt (nobody could call the codec server)" -}}
{{- end -}}
{{- $current := 0 -}}
{{- range $c.keys.items }}{{- if .current }}{{- $current = add1 $current -}}{{- end }}{{- end -}}
{{- if ne (int $current) 1 -}}
{{- fail (printf "codec.keys.items: exactly one key must have current: true (found %d)" (int $current)) -}}
{{- end -}}
{{- $codec := dict "listen" (printf "0.0.0.0:%d" (int $c.port)) "keys" $keys "access" $access -}}
{{- if $c.corsOrigins -}}
{{- $_ := set $codec "cors_origins" $c.corsOrigins -}}
{{- end -}}
{{- if $c.tls.existingSecret -}}
{{- $_ := set $codec "tls" (dict "cert" (printf "%s/tls/tls.crt" $dir) "key" (printf "%s/tls/tls.key" $dir)) -}}
{{- end -}}
{{- if eq $kmsKind "vault-transit" -}}
{{- $v := $c.kms.vaultTransit -}}
{{- $_ := required "codec.kms.vaultTransit.tokenSecret.name is required with kind vault-transit" $v.tokenSecret.name -}}
{{- $k := dict "kind" "vault-transit" "address" (required "codec.kms.vaultTransit.address is required with kind vault-transit" $v.address) "mount" $v.mount "key" $v.key "token" (printf "file:%s/kms/token" $dir) -}}
{{- if $v.namespace }}{{- $_ := set $k "namespace" $v.namespace -}}{{- end -}}
{{- if $v.caConfigMap }}{{- $_ := set $k "ca_file" (printf "%s/kms-ca/ca.crt" $dir) -}}{{- end -}}
{{- $_ := set $codec "kms" $k -}}
{{- else if eq $kmsKind "aws-kms" -}}
{{- $a := $c.kms.awsKms -}}
{{- $_ := required "codec.kms.awsKms.credentialsSecret is required with kind aws-kms" $a.credentialsSecret -}}
{{- $k := dict "kind" "aws-kms" "region" (required "codec.kms.awsKms.region is required with kind aws-kms" $a.region) "key_id" (required "codec.kms.awsKms.keyId is required with kind aws-kms" $a.keyId) -}}
{{- if $a.endpoint }}{{- $_ := set $k "endpoint" $a.endpoint -}}{{- end -}}
{{- $_ := set $codec "kms" $k -}}
{{- end -}}
{{- $_ := set $p "codec" $codec -}}
{{- toYaml $p -}}
{{- end -}}

{{/*
Digest of the key and token Secrets (and the JWKS ConfigMap) as the cluster holds them at
install/upgrade time (`lookup`; empty when rendering offline). Changing a key and running
`helm upgrade` rolls the codec pods.
*/}}
{{- define "tp.codecSecretsChecksum" -}}
{{- $c := .Values.codec -}}
{{- $ns := .Release.Namespace -}}
{{- $data := list (dig "data" dict (lookup "v1" "Secret" $ns $c.keys.existingSecret)) -}}
{{- range $c.tokens -}}
{{- $data = append $data (dig "data" dict (lookup "v1" "Secret" $ns .existingSecret)) -}}
{{- end -}}
{{- if $c.tls.existingSecret -}}
{{- $data = append $data (dig "data" dict (lookup "v1" "Secret" $ns $c.tls.existingSecret)) -}}
{{- end -}}
{{- if eq ($c.kms.kind | default "file") "vault-transit" -}}
{{- $data = append $data (dig "data" dict (lookup "v1" "Secret" $ns $c.kms.vaultTransit.tokenSecret.name)) -}}
{{- else if eq ($c.kms.kind | default "file") "aws-kms" -}}
{{- $data = append $data (dig "data" dict (lookup "v1" "Secret" $ns $c.kms.awsKms.credentialsSecret)) -}}
{{- end -}}
{{- if $c.jwt.enabled -}}
{{- $data = append $data (dig "data" dict (lookup "v1" "ConfigMap" $ns $c.jwt.jwksConfigMap)) -}}
{{- end -}}
{{- toJson $data | sha256sum -}}
{{- end -}}

{{/*
Seconds in a Prometheus-style duration of one unit ("30s", "2m", "1h"); a bare number is seconds.
*/}}
{{- define "tp.durationSeconds" -}}
{{- if hasSuffix "h" . }}{{ mul (trimSuffix "h" . | int) 3600 }}
{{- else if hasSuffix "m" . }}{{ mul (trimSuffix "m" . | int) 60 }}
{{- else }}{{ trimSuffix "s" . | int }}{{ end }}
{{- end }}
