{{/* Names and labels. */}}
{{- define "tether.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tether.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Labels. Each resource's labels are one of the sets below, written once: the selector labels
(what a Service, PDB or NetworkPolicy selects pods by, never changed after install) plus the
common ones, with no key in both, so that no manifest repeats a key (YAML forbids it, and
strict parsers such as go-yaml v3, kustomize's kyaml and ruamel.yaml refuse the document).
*/}}
{{- define "tether.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tether.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "tether.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "tether.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* What every resource of the release carries besides its selector labels. */}}
{{- define "tether.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tether
{{- end }}

{{/* The broker's resources. */}}
{{- define "tether.labels" -}}
{{ include "tether.selectorLabels" . }}
{{ include "tether.commonLabels" . }}
{{- end }}

{{/* The evaluation Redis's resources. */}}
{{- define "tether.redisLabels" -}}
{{ include "tether.redisSelectorLabels" . }}
{{ include "tether.commonLabels" . }}
{{- end }}

{{/*
The broker's labels with operator-supplied ones (`extra`), merged so that each key appears
once; on a clash the chart's label wins (a pod must keep matching its selector).
Call with (dict "root" $ "extra" .Values.podLabels).
*/}}
{{- define "tether.labelsWith" -}}
{{- $labels := include "tether.labels" .root | fromYaml -}}
{{- range $key, $value := (default dict .extra) }}
{{- if not (hasKey $labels $key) }}{{ $_ := set $labels $key $value }}{{ end }}
{{- end }}
{{- toYaml $labels }}
{{- end }}

{{/* An image reference: `repository@digest` when a digest pins it, else `repository:tag`. */}}
{{- define "tether.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .default }}
{{- end -}}
{{- end }}

{{- define "tether.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tether.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tether.secretName" -}}
{{- default (printf "%s-secrets" (include "tether.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "tether.redisName" -}}
{{- printf "%s-redis" (include "tether.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Whether Redis needs the password file from the Secret. */}}
{{- define "tether.redisPassword" -}}
{{- if and (eq .Values.redis.mode "external") (or .Values.redis.external.password .Values.redis.external.passwordInSecret) }}true{{ end }}
{{- end }}

{{/*
Refusals with a readable message, for what the schema cannot express.
*/}}
{{- define "tether.validate" -}}
{{- range $key := list "profile" "issuer" "store" "keys" "providers" "resources" "clients" "metrics" "admin" }}
{{- if hasKey $.Values.config $key }}
{{- fail (printf "config.%s: set by the chart (issuer, redis.*, secrets.*, providers, mcpServers, clients, metrics.port); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- range $key := list "bind" "shutdown_timeout_secs" "shutdown_delay_secs" }}
{{- if hasKey (default dict $.Values.config.server) $key }}
{{- fail (printf "config.server.%s: set by the chart (shutdownTimeoutSeconds and shutdownDelaySeconds for the shutdown ones)" $key) }}
{{- end }}
{{- end }}
{{- range $kind, $entries := dict "providers" .Values.providers "mcpServers" .Values.mcpServers "clients" .Values.clients }}
{{- range $id, $entry := $entries }}
{{- range $key := list "client_secret" "client_secret_file" "secret" "secret_file" }}
{{- if hasKey $entry $key }}
{{- fail (printf "%s.%s.%s: secrets do not go in values read by everyone; put it in secrets.%s.%s (or the existing Secret)" $kind $id $key $kind $id) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (hasPrefix "https://" .Values.issuer) }}
{{- fail "issuer: set it to the https origin MCP clients reach Tether at, e.g. --set issuer=https://auth.example.com" }}
{{- end }}
{{- if and (eq .Values.redis.mode "external") (not .Values.redis.external.url) }}
{{- fail "redis.external.url: required with redis.mode=external (or set redis.mode=bundled to evaluate)" }}
{{- end }}
{{- if and (eq .Values.redis.mode "external") (regexMatch "://[^/@]*:[^/@]*@" .Values.redis.external.url) }}
{{- fail "redis.external.url: must not carry a password; use redis.external.password (kept in the Secret)" }}
{{- end }}
{{- if not .Values.secrets.existingSecret }}
{{- if or (not .Values.secrets.encryptionKeys) (not .Values.secrets.signingKeys) }}
{{- fail "secrets.encryptionKeys and secrets.signingKeys: required (run `tether keys generate`), or name a Secret holding them in secrets.existingSecret" }}
{{- end }}
{{- range $id, $p := .Values.providers }}
{{- if and (not $p.noClientSecret) (not (hasKey $.Values.secrets.providers $id)) }}
{{- fail (printf "secrets.providers.%s: the provider's client secret is required (or set providers.%s.noClientSecret=true for a PKCE-only oauth2/oidc provider)" $id $id) }}
{{- end }}
{{- end }}
{{- range $id, $r := .Values.mcpServers }}
{{- if not (hasKey $.Values.secrets.mcpServers $id) }}
{{- fail (printf "secrets.mcpServers.%s: the MCP server's introspection secret is required" $id) }}
{{- end }}
{{- end }}
{{- range $id, $t := .Values.admin.tokens }}
{{- if not (hasKey $.Values.secrets.adminTokens $id) }}
{{- fail (printf "secrets.adminTokens.%s: the admin token's value is required (at least 32 characters)" $id) }}
{{- end }}
{{- end }}
{{- range $id, $c := .Values.clients }}
{{- if and (ne (default "client_secret_basic" $c.token_endpoint_auth_method) "none") (not (hasKey $.Values.secrets.clients $id)) }}
{{- fail (printf "secrets.clients.%s: the client's secret is required (or set clients.%s.token_endpoint_auth_method=none)" $id $id) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $id, $r := .Values.mcpServers }}
{{- if not (hasKey $.Values.providers (default "" $r.provider)) }}
{{- fail (printf "mcpServers.%s.provider: names no provider in providers (%s)" $id (keys $.Values.providers | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- if and .Values.ingress.enabled (ne .Values.ingress.host (trimPrefix "https://" .Values.issuer)) }}
{{- fail (printf "ingress.host: %q must be the issuer's host (%s)" .Values.ingress.host (trimPrefix "https://" .Values.issuer)) }}
{{- end }}
{{- if and .Values.admin.enabled (not .Values.admin.tokens) }}
{{- fail "admin.tokens: the admin API is enabled but no token may call it (no token, no access)" }}
{{- end }}
{{- if and .Values.admin.enabled (or (eq (int .Values.admin.port) 8080) (eq (int .Values.admin.port) (int .Values.metrics.port))) }}
{{- fail "admin.port: must differ from the HTTP port (8080) and metrics.port" }}
{{- end }}
{{- if ge (add (int .Values.shutdownTimeoutSeconds) (int .Values.shutdownDelaySeconds)) (int .Values.terminationGracePeriodSeconds) }}
{{- fail "shutdownDelaySeconds + shutdownTimeoutSeconds: must be shorter than terminationGracePeriodSeconds, or Kubernetes kills Tether mid-request" }}
{{- end }}
{{- end }}

{{/*
Tether's configuration file (JSON), from .Values.config and the chart's own wiring.
*/}}
{{- define "tether.config" -}}
{{- $secretDir := "/etc/tether/secrets" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "profile" "production" -}}
{{- $_ := set $cfg "issuer" .Values.issuer -}}
{{- $server := default dict $cfg.server -}}
{{- $_ := set $server "bind" "0.0.0.0:8080" -}}
{{- $_ := set $server "shutdown_timeout_secs" .Values.shutdownTimeoutSeconds -}}
{{- $_ := set $server "shutdown_delay_secs" .Values.shutdownDelaySeconds -}}
{{- $_ := set $cfg "server" $server -}}
{{- $_ := set $cfg "metrics" (dict "bind" (printf "0.0.0.0:%d" (int .Values.metrics.port))) -}}
{{- $store := dict "kind" "redis" "prefix" .Values.redis.prefix "timeout_ms" .Values.redis.timeoutMs "write_schema" (default 1 .Values.redis.writeSchema) -}}
{{- if eq .Values.redis.mode "bundled" }}
{{- $_ := set $store "url" (printf "redis://%s:6379" (include "tether.redisName" .)) -}}
{{- else }}
{{- $r := .Values.redis.external -}}
{{- $_ := set $store "topology" $r.topology -}}
{{- $_ := set $store "url" $r.url -}}
{{- if $r.username }}{{ $_ := set $store "username" $r.username }}{{ end -}}
{{- if include "tether.redisPassword" . }}{{ $_ := set $store "password_file" (printf "%s/redis-password" $secretDir) }}{{ end -}}
{{- if eq $r.topology "sentinel" }}{{ $_ := set $store "sentinel_master" $r.sentinelMaster }}{{ end -}}
{{- if $r.caSecret }}{{ $_ := set $store "ca_file" "/etc/tether/redis-ca/ca.crt" }}{{ end -}}
{{- end }}
{{- $_ := set $cfg "store" $store -}}
{{- $_ := set $cfg "keys" (dict "encryption_file" (printf "%s/encryption-keys" $secretDir) "signing_file" (printf "%s/signing-keys" $secretDir)) -}}
{{- $providers := dict -}}
{{- range $id, $p := .Values.providers }}
{{- $p := omit $p "noClientSecret" "client_secret" "client_secret_file" -}}
{{- if not (index $.Values.providers $id).noClientSecret }}
{{- $_ := set $p "client_secret_file" (printf "%s/provider-%s-client-secret" $secretDir $id) -}}
{{- end }}
{{- $_ := set $providers $id $p -}}
{{- end }}
{{- $_ := set $cfg "providers" $providers -}}
{{- $resources := dict -}}
{{- range $id, $r := .Values.mcpServers }}
{{- $r := omit $r "secret" "secret_file" -}}
{{- $_ := set $r "secret_file" (printf "%s/resource-%s-secret" $secretDir $id) -}}
{{- $_ := set $resources $id $r -}}
{{- end }}
{{- $_ := set $cfg "resources" $resources -}}
{{- $clients := dict -}}
{{- range $id, $c := .Values.clients }}
{{- $c := omit $c "client_secret" "client_secret_file" -}}
{{- if ne (default "client_secret_basic" $c.token_endpoint_auth_method) "none" }}
{{- $_ := set $c "client_secret_file" (printf "%s/client-%s-secret" $secretDir $id) -}}
{{- end }}
{{- $_ := set $clients $id $c -}}
{{- end }}
{{- $_ := set $cfg "clients" $clients -}}
{{- if .Values.admin.enabled }}
{{- $tokens := dict -}}
{{- range $id, $t := .Values.admin.tokens }}
{{- $_ := set $tokens $id (dict "scopes" $t.scopes "token_file" (printf "%s/admin-%s-token" $secretDir $id)) -}}
{{- end }}
{{- $_ := set $cfg "admin" (dict "bind" (printf "0.0.0.0:%d" (int .Values.admin.port)) "tokens" $tokens) -}}
{{- end }}
{{- toPrettyJson $cfg }}
{{- end }}
