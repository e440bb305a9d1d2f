{{/* Names, labels and the checks every template relies on. */}}

{{- define "tollhouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* `<release>-<chart>`, or the release name alone when it already contains the chart name. */}}
{{- define "tollhouse.fullname" -}}
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

{{- define "tollhouse.controller.fullname" -}}
{{- printf "%s-controller" (include "tollhouse.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tollhouse.dataplane.fullname" -}}
{{- printf "%s-dataplane" (include "tollhouse.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The in-cluster DNS name dataplanes reach the controller at; its certificate carries it. */}}
{{- define "tollhouse.controller.host" -}}
{{- printf "%s.%s.svc" (include "tollhouse.controller.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "tollhouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "tollhouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tollhouse
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: pass (dict "ctx" $ "component" "controller"). */}}
{{- define "tollhouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tollhouse.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "tollhouse.componentLabels" -}}
{{ include "tollhouse.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "tollhouse.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* Secret names holding tls.crt, tls.key and ca.crt for each side. */}}
{{- define "tollhouse.controller.tlsSecret" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- .Values.tls.existingSecret.controller }}
{{- else }}
{{- printf "%s-tls" (include "tollhouse.controller.fullname" .) }}
{{- end }}
{{- end }}

{{- define "tollhouse.dataplane.tlsSecret" -}}
{{- if eq .Values.tls.mode "existingSecret" }}
{{- .Values.tls.existingSecret.dataplane }}
{{- else }}
{{- printf "%s-tls" (include "tollhouse.dataplane.fullname" .) }}
{{- end }}
{{- end }}

{{/* PodDisruptionBudget's API: policy/v1 from Kubernetes 1.21, policy/v1beta1 before. */}}
{{- define "tollhouse.pdb.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" }}policy/v1{{ else }}policy/v1beta1{{ end }}
{{- end }}

{{/* HorizontalPodAutoscaler's API: autoscaling/v2 from Kubernetes 1.23, v2beta2 before. */}}
{{- define "tollhouse.hpa.apiVersion" -}}
{{- if .Capabilities.APIVersions.Has "autoscaling/v2" }}autoscaling/v2{{ else }}autoscaling/v2beta2{{ end }}
{{- end }}

{{/* Cross-field checks the schema cannot express; each names the value to change. */}}
{{- define "tollhouse.validate" -}}
{{- if and (eq .Values.tls.mode "existingSecret") (or (not .Values.tls.existingSecret.controller) (not .Values.tls.existingSecret.dataplane)) }}
{{- fail "tls.mode=existingSecret needs both tls.existingSecret.controller and tls.existingSecret.dataplane (Secrets with tls.crt, tls.key and ca.crt)" }}
{{- end }}
{{- if and .Values.dataplane.autoscaling.enabled (gt (int .Values.dataplane.autoscaling.minReplicas) (int .Values.dataplane.autoscaling.maxReplicas)) }}
{{- fail (printf "dataplane.autoscaling.minReplicas (%d) is above dataplane.autoscaling.maxReplicas (%d)" (int .Values.dataplane.autoscaling.minReplicas) (int .Values.dataplane.autoscaling.maxReplicas)) }}
{{- end }}
{{- if and (not .Values.dataplane.service.public.enabled) (not .Values.dataplane.service.internal.enabled) }}
{{- fail "dataplane.service.public.enabled and dataplane.service.internal.enabled are both false: nothing could reach the dataplanes" }}
{{- end }}
{{- if ge (int .Values.dataplane.drainDelaySeconds) (int .Values.dataplane.terminationGracePeriodSeconds) }}
{{- fail (printf "dataplane.drainDelaySeconds (%d) must be below dataplane.terminationGracePeriodSeconds (%d), or Kubernetes kills dataplanes before they drain" (int .Values.dataplane.drainDelaySeconds) (int .Values.dataplane.terminationGracePeriodSeconds)) }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret.name }}
{{- fail "redis.url and redis.existingSecret.name are both set: give the Redis URL one way" }}
{{- end }}
{{- if and .Values.redis.inChart.enabled (or .Values.redis.url .Values.redis.existingSecret.name) }}
{{- fail "redis.inChart.enabled is set with redis.url or redis.existingSecret.name: use the chart's Redis or yours, not both" }}
{{- end }}
{{- if and .Values.controller.publicUrl (not (regexMatch "^https?://[^/]+" .Values.controller.publicUrl)) }}
{{- fail (printf "controller.publicUrl %q must start with http:// or https:// and a host" .Values.controller.publicUrl) }}
{{- end }}
{{- end }}

{{/* The Secret and key the dataplanes read the Redis URL from; empty without Redis. */}}
{{- define "tollhouse.redis.secret" -}}
{{- if .Values.redis.existingSecret.name -}}
{{ .Values.redis.existingSecret.name }}
{{- else if or .Values.redis.url .Values.redis.inChart.enabled -}}
{{ include "tollhouse.fullname" . }}-redis
{{- end -}}
{{- end }}
{{- define "tollhouse.redis.key" -}}
{{- if .Values.redis.existingSecret.name -}}
{{ .Values.redis.existingSecret.key }}
{{- else -}}
url
{{- end -}}
{{- end }}
