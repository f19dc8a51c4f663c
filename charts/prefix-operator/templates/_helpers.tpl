{{/* Chart name, cut to 63 characters (a label value). */}}
{{- define "prefix-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of every object: the release name, plus the chart name unless the
release name already contains it ("prefix-operator" stays "prefix-operator").
*/}}
{{- define "prefix-operator.fullname" -}}
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

{{- define "prefix-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; never change them between releases. */}}
{{- define "prefix-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prefix-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "prefix-operator.labels" -}}
helm.sh/chart: {{ include "prefix-operator.chart" . }}
{{ include "prefix-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: prefix-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "prefix-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prefix-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "prefix-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* host:port for --http-addr; IPv6 addresses go in brackets. */}}
{{- define "prefix-operator.httpAddr" -}}
{{- $a := .Values.http.bindAddress }}
{{- if contains ":" $a }}
{{- printf "[%s]:%d" $a (int .Values.http.port) }}
{{- else }}
{{- printf "%s:%d" $a (int .Values.http.port) }}
{{- end }}
{{- end }}

{{/* host:port for --metrics-addr; IPv6 addresses go in brackets. */}}
{{- define "prefix-operator.metricsAddr" -}}
{{- $a := .Values.http.bindAddress }}
{{- if contains ":" $a }}
{{- printf "[%s]:%d" $a (int .Values.http.metrics.port) }}
{{- else }}
{{- printf "%s:%d" $a (int .Values.http.metrics.port) }}
{{- end }}
{{- end }}
