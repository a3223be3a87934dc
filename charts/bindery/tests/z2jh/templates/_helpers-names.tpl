{{- /* z2jh's documented name logic: fullnameOverride verbatim; else
{release}-{nameOverride or chart name}, or {release} when it already holds
that name. A parent calling with its own context reads these from
.Values.jupyterhub. With the default fullnameOverride "" every name is the
component's alone. */}}
{{- define "jupyterhub.fullname" -}}
{{- $values := ternary .Values (.Values.jupyterhub | default dict) (eq .Chart.Name "jupyterhub") -}}
{{- if kindIs "string" $values.fullnameOverride -}}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := $values.nameOverride | default .Chart.Name -}}
{{- if contains $name .Release.Name -}}{{ .Release.Name }}{{- else -}}{{ printf "%s-%s" .Release.Name $name }}{{- end -}}
{{- end -}}
{{- end -}}

{{- define "jupyterhub.fullname.dash" -}}
{{- with include "jupyterhub.fullname" . }}{{ . }}-{{ end -}}
{{- end -}}

{{- define "jupyterhub.hub.fullname" -}}{{ include "jupyterhub.fullname.dash" . }}hub{{- end -}}
{{- define "jupyterhub.proxy.fullname" -}}{{ include "jupyterhub.fullname.dash" . }}proxy{{- end -}}
{{- define "jupyterhub.proxy-api.fullname" -}}{{ include "jupyterhub.proxy.fullname" . }}-api{{- end -}}
{{- define "jupyterhub.proxy-public.fullname" -}}{{ include "jupyterhub.proxy.fullname" . }}-public{{- end -}}
{{- define "jupyterhub.singleuser.fullname" -}}{{ include "jupyterhub.fullname.dash" . }}singleuser{{- end -}}

{{- define "jupyterhub.matchLabels" -}}
app: {{ .Values.nameOverride | default "jupyterhub" }}
release: {{ .Release.Name }}
{{- end -}}
