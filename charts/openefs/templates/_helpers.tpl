{{/* Name prefix of every object: the release name, "openefs" added when missing. */}}
{{- define "openefs.fullname" -}}
{{- if contains "openefs" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-openefs" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; "component" names the part. */}}
{{- define "openefs.labels" -}}
app.kubernetes.io/name: openefs
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: openefs
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Labels that select the pods of one part. */}}
{{- define "openefs.selectorLabels" -}}
app.kubernetes.io/name: openefs
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* <registry>/<repository>:<tag> of an openefs image. */}}
{{- define "openefs.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .image.repository (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* Namespace of the default FileSystem. */}}
{{- define "openefs.defaultFileSystemNamespace" -}}
{{- .Values.defaultFileSystem.namespace | default .Release.Namespace -}}
{{- end -}}

{{/* Security context of containers that need no privilege. */}}
{{- define "openefs.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
