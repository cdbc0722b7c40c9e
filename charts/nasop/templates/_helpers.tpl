{{/*
The chart name, at most 63 characters.
*/}}
{{- define "nasop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name, plus the chart name unless the
release name contains it; at most 63 characters (a DNS label).
*/}}
{{- define "nasop.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "nasop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The labels of every object. (Not app.kubernetes.io/managed-by=nasop: that label selects the
trainer and probe pods the operator watches; Helm's objects carry managed-by=Helm.)
*/}}
{{- define "nasop.labels" -}}
helm.sh/chart: {{ include "nasop.chart" . }}
{{ include "nasop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: nasop
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The labels that select the operator pods (immutable in a Deployment's selector).
*/}}
{{- define "nasop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nasop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "nasop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nasop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image reference.
*/}}
{{- define "nasop.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/*
The name of the leader-election Lease.
*/}}
{{- define "nasop.leaseName" -}}
{{- default (include "nasop.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
The watched namespaces: each once, in the given order. Fails on an entry that is not a
DNS-1123 label (the operator would refuse it at start-up).
*/}}
{{- define "nasop.watchNamespaces" -}}
{{- $seen := list }}
{{- range .Values.watchNamespaces }}
{{- $ns := toString . | trim }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $ns) }}
{{- fail (printf "watchNamespaces: %q is not a namespace name (a DNS-1123 label)" $ns) }}
{{- end }}
{{- if not (has $ns $seen) }}
{{- $seen = append $seen $ns }}
{{- end }}
{{- end }}
{{- join "," $seen }}
{{- end }}

{{/*
Checks of the values that no template can render around.
*/}}
{{- define "nasop.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 requires leaderElection.enabled: two active operators would race on the same objects" }}
{{- end }}
{{- if not (has (toString .Values.logFormat) (list "json" "text")) }}
{{- fail (printf "logFormat: %q is neither json nor text" (toString .Values.logFormat)) }}
{{- end }}
{{- $lease := int .Values.leaderElection.leaseSeconds }}
{{- if or (lt $lease 2) (gt $lease 3600) }}
{{- fail "leaderElection.leaseSeconds must be between 2 and 3600" }}
{{- end }}
{{- end }}
