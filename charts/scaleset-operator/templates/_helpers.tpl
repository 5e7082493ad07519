{{/* The name of every object: one release per cluster, since ClusterRoles and CRDs are cluster-wide. */}}
{{- define "scaleset-operator.fullname" -}}
{{- .Values.fullnameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scaleset-operator.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "scaleset-operator.fullname" .) -}}
{{- end -}}

{{/* Labels of every object: those of manifests/ (part-of) and Helm's own. */}}
{{- define "scaleset-operator.labels" -}}
app.kubernetes.io/part-of: scaleset-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator's pods, as manifests/ selects them. */}}
{{- define "scaleset-operator.selectorLabels" -}}
app.kubernetes.io/name: scaleset-operator
{{- end -}}

{{- define "scaleset-operator.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/*
The objects of manifests/rbac.yaml (files/rbac.yaml links to it), so the chart grants exactly what the
kustomize base grants: a dict of "Kind/name" -> object.
*/}}
{{- define "scaleset-operator.rbacDocuments" -}}
{{- $documents := dict -}}
{{- range regexSplit "(?m)^---[ \t]*$" (.Files.Get "files/rbac.yaml") -1 -}}
{{- $document := fromYaml . -}}
{{- if $document.kind -}}
{{- $_ := set $documents (printf "%s/%s" $document.kind $document.metadata.name) $document -}}
{{- end -}}
{{- end -}}
{{- toJson $documents -}}
{{- end -}}

{{/* Resources that are not namespaced: their verbs stay cluster-wide whatever watchNamespaces says. */}}
{{- define "scaleset-operator.clusterScoped" -}}
nodes namespaces persistentvolumes customresourcedefinitions maintenanceconfigurations imagecatalogs tokenreviews subjectaccessreviews
{{- end -}}

{{/*
The ClusterRole's rules split for watchNamespaces: "cluster" keeps every read and every verb on
cluster-scoped resources, "namespaced" the writes on namespaced resources (bound in each namespace).
*/}}
{{- define "scaleset-operator.splitRules" -}}
{{- $rules := (index (include "scaleset-operator.rbacDocuments" . | fromJson) "ClusterRole/scaleset-operator").rules -}}
{{- $clusterScoped := splitList " " (include "scaleset-operator.clusterScoped" .) -}}
{{- $reads := list "get" "list" "watch" -}}
{{- $cluster := list -}}
{{- $namespaced := list -}}
{{- range $rules -}}
{{- $rule := . -}}
{{- range $rule.resources -}}
{{- $resource := . -}}
{{- if has (first (splitList "/" $resource)) $clusterScoped -}}
{{- $cluster = append $cluster (dict "apiGroups" $rule.apiGroups "resources" (list $resource) "verbs" $rule.verbs) -}}
{{- else -}}
{{- $read := list -}}
{{- $write := list -}}
{{- range $rule.verbs -}}
{{- if has . $reads -}}{{- $read = append $read . -}}{{- else -}}{{- $write = append $write . -}}{{- end -}}
{{- end -}}
{{- if $read -}}
{{- $cluster = append $cluster (dict "apiGroups" $rule.apiGroups "resources" (list $resource) "verbs" $read) -}}
{{- end -}}
{{- if $write -}}
{{- $namespaced = append $namespaced (dict "apiGroups" $rule.apiGroups "resources" (list $resource) "verbs" $write) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "cluster" $cluster "namespaced" $namespaced) -}}
{{- end -}}
