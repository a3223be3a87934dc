{{- define "bindery.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "bindery.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bindery.labels" -}}
{{ include "bindery.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bindery.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "bindery.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* The engine socket on the node for imageBuilderType, as upstream's chart sets build_docker_host. */}}
{{- define "bindery.engineSocket" -}}
{{- $sockets := dict "host" "/var/run/docker.sock" "dind" "/var/run/dind/docker.sock" "pink" "/var/run/pink/podman.sock" -}}
{{- get $sockets .Values.build.imageBuilderType -}}
{{- end -}}

{{- define "bindery.hubUrl" -}}
{{- if .Values.hub.url -}}{{ .Values.hub.url }}{{- else if .Values.jupyterhub.enabled -}}http://proxy-public/{{- end -}}
{{- end -}}

{{- define "bindery.hubApiUrl" -}}
{{- if .Values.hub.apiUrl -}}{{ .Values.hub.apiUrl }}{{- else if .Values.jupyterhub.enabled -}}http://hub:8081/hub/api/{{- end -}}
{{- end -}}

{{- define "bindery.secretName" -}}{{ include "bindery.fullname" . }}{{- end -}}

{{- define "bindery.hubTokenSecret" -}}{{ default (include "bindery.secretName" .) .Values.hub.existingSecret }}{{- end -}}
{{- define "bindery.buildTokenSecret" -}}{{ default (include "bindery.secretName" .) .Values.buildToken.existingSecret }}{{- end -}}
{{- define "bindery.registrySecret" -}}{{ default (include "bindery.secretName" .) .Values.registry.existingSecret }}{{- end -}}

{{/* Whether more than one replica contends for the culler's Lease. */}}
{{- define "bindery.leaderElection" -}}
{{- if and .Values.cull.enabled (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{/* bindery.toml, from the values; extraConfig is merged over it. */}}
{{- define "bindery.config" -}}
{{- $v := .Values -}}
{{- $web := dict "base_url" $v.web.baseUrl "max_connections" (int $v.web.maxConnections) "header_read_timeout_secs" (int $v.web.headerReadTimeoutSecs) "build_token_secret" (dict "env" "BINDERHUB_BUILD_TOKEN_SECRET") -}}
{{- with $v.web.trustedProxies }}{{ $_ := set $web "trusted_proxies" . }}{{ end -}}
{{- with $v.web.badgeBaseUrl }}{{ $_ := set $web "badge_base_url" . }}{{ end -}}
{{- with $v.web.corsAllowOrigin }}{{ $_ := set $web "cors_allow_origin" . }}{{ end -}}
{{- $registry := dict "image_prefix" $v.registry.imagePrefix -}}
{{- with $v.registry.url }}{{ $_ := set $registry "url" . }}{{ end -}}
{{- if $v.registry.username }}{{ $_ := set $registry "username" $v.registry.username }}{{ $_ := set $registry "password" (dict "env" "REGISTRY_PASSWORD") }}{{ end -}}
{{- $hub := dict "auth_enabled" $v.hub.authEnabled "api_token" (dict "env" "JUPYTERHUB_API_TOKEN") -}}
{{- with (include "bindery.hubUrl" .) }}{{ $_ := set $hub "url" . }}{{ end -}}
{{- with (include "bindery.hubApiUrl" .) }}{{ $_ := set $hub "api_url" . }}{{ end -}}
{{- $quota := dict "per_repo" (int $v.quota.perRepo) "per_repo_higher" (int $v.quota.perRepoHigher) -}}
{{- if not (kindIs "invalid" $v.quota.total) }}{{ $_ := set $quota "total" (int $v.quota.total) }}{{ end -}}
{{- $build := dict "strategy" $v.build.strategy "timeout_secs" (int $v.build.timeoutSecs) "allowed_builder_images" (list $v.build.builderImage) -}}
{{- $r2d := dict "builder_image" $v.build.builderImage "executor" "local" -}}
{{- if eq $v.build.executor "kubernetes" -}}
{{- $_ := set $r2d "executor" "kubernetes" -}}
{{- $k := dict "namespace" .Release.Namespace "docker_host" (include "bindery.engineSocket" .) "sticky_builds" $v.build.kubernetes.stickyBuilds "max_age_secs" (int $v.build.kubernetes.maxAgeSecs) "node_selector" $v.build.kubernetes.nodeSelector -}}
{{- with $v.build.kubernetes.pushSecret }}{{ $_ := set $k "push_secret" . }}{{ end -}}
{{- $_ := set $build "kubernetes" $k -}}
{{- else if eq $v.build.executor "local" -}}
{{- $_ := set $build "local" (dict "docker_host" (printf "unix://%s" (include "bindery.engineSocket" .))) -}}
{{- end -}}
{{- $cull := dict "enabled" $v.cull.enabled "every_secs" (int $v.cull.everySecs) "policies" $v.cull.policies -}}
{{- if include "bindery.leaderElection" . }}{{ $_ := set $cull "leader" (dict "namespace" .Release.Namespace "lease" (printf "%s-culler" (include "bindery.fullname" .)) "lease_secs" (int $v.cull.leaseSecs)) }}{{ end -}}
{{- $plugins := dict $v.build.strategy (dict "config" $r2d) "idle" (dict "config" (dict "timeout_secs" (int $v.cull.timeoutSecs) "max_age_secs" (int $v.cull.maxAgeSecs) "cull_users" true)) -}}
{{- $plugins = mergeOverwrite $plugins (deepCopy $v.plugins) -}}
{{- $oci := dict "insecure_registries" $v.pluginRegistry.insecureRegistries -}}
{{- with $v.pluginRegistry.username }}{{ $_ := set $oci "username" . }}{{ $_ := set $oci "password" (dict "env" "PLUGIN_REGISTRY_PASSWORD") }}{{ end -}}
{{- $config := dict "listen" "0.0.0.0:8585" "data_dir" "/var/lib/bindery" "web" $web "registry" $registry "hub" $hub "quota" $quota "build" $build "cull" $cull "plugins" $plugins "plugin_runtime" (dict "oci" $oci "compile_cache_dir" "/var/lib/bindery/plugin-cache") -}}
{{- toToml (mergeOverwrite $config (deepCopy $v.extraConfig)) -}}
{{- end -}}
