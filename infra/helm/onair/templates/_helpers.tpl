{{/* Resource name prefix: the release name, plus "-onair" unless it already says so. */}}
{{- define "onair.fullname" -}}
{{- if contains "onair" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-onair" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "onair.labels" -}}
app.kubernetes.io/name: onair
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "origin"). */}}
{{- define "onair.selector" -}}
app.kubernetes.io/name: onair
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "onair.secretName" -}}
{{- include "onair.fullname" . }}-secrets
{{- end -}}

{{/* A secret value: the one in values, else the one already in the release's Secret, else random. */}}
{{- define "onair.secretValue" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace (include "onair.secretName" .ctx) -}}
{{- if .value -}}
{{- .value -}}
{{- else if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}

{{/* Environment of every OnAir pod: identity, registry, secrets, shared settings. */}}
{{- define "onair.commonEnv" -}}
- name: POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: ONAIR_HTTP_ADDR
  value: "0.0.0.0:8080"
- name: ONAIR_DATA_DIR
  value: /var/lib/onair
- name: ONAIR_CLUSTER__REGISTRY
  valueFrom: {secretKeyRef: {name: {{ include "onair.secretName" . }}, key: registry-url}}
- name: ONAIR_PLAYBACK__TOKEN_SECRET
  valueFrom: {secretKeyRef: {name: {{ include "onair.secretName" . }}, key: token-secret}}
- name: ONAIR_ADMIN__TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "onair.secretName" . }}, key: admin-token}}
- name: ONAIR_ADMIN__DRAIN_TIMEOUT_S
  value: {{ .Values.drainTimeoutSeconds | int | quote }}
- name: ONAIR_HTTP__TRUSTED
  value: {{ .Values.trusted | toJson | quote }}
{{- range $k, $v := .Values.env }}
- name: {{ $k }}
  value: {{ $v | toString | quote }}
{{- end }}
{{- end -}}

{{/* A role's extra ONAIR_* variables, as env entries (empty for none). */}}
{{- define "onair.extraEnv" -}}
{{- range $k, $v := . }}
{{ printf "- name: %s" $k }}
{{ printf "  value: %s" ($v | toString | quote) }}
{{- end }}
{{- end -}}

{{/* Probes, lifecycle and ports of an OnAir video node (origin or relay). */}}
{{- define "onair.nodeContainer" -}}
readinessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 2
  failureThreshold: 2
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  failureThreshold: 6
lifecycle:
  # Usher stops offering the node, its viewers move, relays re-parent; then it exits.
  preStop:
    exec: {command: ["/usr/local/bin/onair", "drain"]}
volumeMounts:
  - {name: data, mountPath: /var/lib/onair}
{{- end -}}

{{- define "onair.podAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: "8080"
prometheus.io/path: /metrics
{{- end -}}

{{/* usher.regions as the inline TOML table an ONAIR_* variable takes: {eu=["192.0.2.0/24"]}. */}}
{{- define "onair.regionsTable" -}}
{{- $entries := list -}}
{{- range $region, $nets := . -}}
{{- $entries = append $entries (printf "%s=%s" $region (toJson $nets)) -}}
{{- end -}}
{{- printf "{%s}" (join "," $entries) -}}
{{- end -}}
