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

{{/* The engine on the build nodes, as upstream's chart picks it from
imageBuilderType: the socket and the storage folder on the node. */}}
{{- define "bindery.engineSocket" -}}
{{- $type := .Values.build.imageBuilderType -}}
{{- if eq $type "dind" -}}{{ printf "%s/docker.sock" .Values.dind.hostSocketDir }}
{{- else if eq $type "pink" -}}{{ printf "%s/podman.sock" .Values.pink.hostSocketDir }}
{{- else -}}{{ printf "%s/%s" .Values.imageCleaner.host.dockerSocketDir .Values.imageCleaner.host.dockerSocketName }}
{{- end -}}
{{- end -}}

{{- define "bindery.engineStorage" -}}
{{- $type := .Values.build.imageBuilderType -}}
{{- if eq $type "dind" -}}{{ .Values.dind.hostLibDir }}
{{- else if eq $type "pink" -}}{{ .Values.pink.hostStorageDir }}
{{- else -}}{{ .Values.imageCleaner.host.dockerLibDir }}
{{- end -}}
{{- end -}}

{{/* Labels of the builder DaemonSets' pods: sticky builds find the build
nodes by `component=image-builder,app=binder`, as upstream's. */}}
{{- define "bindery.builderLabels" -}}
app: binder
component: image-builder
release: {{ .Release.Name }}
{{- end -}}

{{/* The hub's public URL, where browsers are sent: hub.url, else the
bundled hub's ingress host; never an in-cluster name, which no browser
resolves. */}}
{{- define "bindery.hubUrl" -}}
{{- if .Values.hub.url -}}{{ .Values.hub.url }}
{{- else if .Values.jupyterhub.enabled -}}
{{- $ingress := .Values.jupyterhub.ingress | default dict -}}
{{- if not (and $ingress.enabled $ingress.hosts) -}}
{{- fail "hub.url: browsers are sent to the hub after a launch, so Bindery needs its public URL: set hub.url (e.g. https://hub.example.org/), or enable jupyterhub.ingress with a host" -}}
{{- end -}}
{{- $host := first $ingress.hosts -}}
{{- $https := false -}}
{{- range $ingress.tls }}{{ if has $host .hosts }}{{ $https = true }}{{ end }}{{ end -}}
{{- printf "%s://%s%s/" (ternary "https" "http" $https) $host (include "bindery.hubBaseUrl" . | trimSuffix "/") -}}
{{- end -}}
{{- end -}}

{{- define "bindery.hubBaseUrl" -}}{{ .Values.jupyterhub.hub.baseUrl | default "/" }}{{- end -}}

{{/* Server to server: the bundled hub's own Service by z2jh's name helper,
not through the proxy. */}}
{{- define "bindery.hubApiUrl" -}}
{{- if .Values.hub.apiUrl -}}{{ .Values.hub.apiUrl }}
{{- else if .Values.jupyterhub.enabled -}}
{{- printf "http://%s:8081%s/hub/api/" (include "jupyterhub.hub.fullname" .) (include "bindery.hubBaseUrl" . | trimSuffix "/") -}}
{{- end -}}
{{- end -}}

{{/* Where the hub token comes from: the bundled hub's Secret (z2jh keeps
`hub.services.binder.apiToken` there, generated once), else Bindery's. */}}
{{- define "bindery.hubTokenRef" -}}
{{- if .Values.jupyterhub.enabled -}}
{ name: {{ include "jupyterhub.hub.fullname" . }}, key: hub.services.binder.apiToken }
{{- else -}}
{ name: {{ default (include "bindery.secretName" .) .Values.hub.existingSecret }}, key: hub-token }
{{- end -}}
{{- end -}}

{{/* extraEnv: a list of EnvVars, or a map of names to strings or EnvVar objects, as z2jh's. */}}
{{- define "bindery.extraEnv" -}}
{{- if kindIs "slice" . -}}
{{ toYaml . }}
{{- else -}}
{{- range $name, $value := . }}
- name: {{ $name }}
{{- if kindIs "map" $value }}
  {{- toYaml (omit $value "name") | nindent 2 }}
{{- else }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The memory limit: what a replica holds at worst with the chart's
settings (README, "Memory budget"): 416 MiB, plus the plugins' budget. */}}
{{- define "bindery.resources" -}}
{{- $r := deepCopy .Values.resources -}}
{{- $limits := $r.limits | default dict -}}
{{- if not $limits.memory -}}
{{- $_ := set $limits "memory" (printf "%dMi" (add 416 (int .Values.pluginRuntime.memoryBudgetMiB))) -}}
{{- end -}}
{{- $_ := set $r "limits" $limits -}}
{{- toYaml $r -}}
{{- end -}}

{{- define "bindery.secretName" -}}{{ include "bindery.fullname" . }}{{- end -}}

{{- define "bindery.buildTokenSecret" -}}{{ default (include "bindery.secretName" .) .Values.buildToken.existingSecret }}{{- end -}}
{{- define "bindery.registrySecret" -}}{{ default (include "bindery.secretName" .) .Values.registry.existingSecret }}{{- end -}}

{{/* Whether more than one replica contends for the Lease of the one that culls and tends the warm pool. */}}
{{- define "bindery.leaderElection" -}}
{{- if and (or .Values.cull.enabled (gt (int .Values.warmPool.maxServers) 0)) (gt (int .Values.replicas) 1) -}}true{{- end -}}
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
{{- $hub := dict "auth_enabled" $v.hub.authEnabled "api_token" (dict "env" "JUPYTERHUB_API_TOKEN") "oauth_client_id" $v.hub.oauthClientId "use_named_servers" $v.hub.useNamedServers "named_server_limit_per_user" (int $v.hub.namedServerLimitPerUser) -}}
{{- with $v.hub.oauthRedirectUri }}{{ $_ := set $hub "oauth_redirect_uri" . }}{{ end -}}
{{- with (include "bindery.hubUrl" .) }}{{ $_ := set $hub "url" . }}{{ end -}}
{{- with (include "bindery.hubApiUrl" .) }}{{ $_ := set $hub "api_url" . }}{{ end -}}
{{- $quota := dict "per_repo" (int $v.quota.perRepo) "per_repo_higher" (int $v.quota.perRepoHigher) -}}
{{- if not (kindIs "invalid" $v.quota.total) }}{{ $_ := set $quota "total" (int $v.quota.total) }}{{ end -}}
{{- if $v.quota.countPods }}{{ $_ := set $quota "kubernetes" (dict "namespace" .Release.Namespace) }}{{ end -}}
{{- $build := dict "strategy" $v.build.strategy "timeout_secs" (int $v.build.timeoutSecs) "allowed_builder_images" (list $v.build.builderImage) -}}
{{- $r2d := dict "builder_image" $v.build.builderImage "executor" "local" -}}
{{- if eq $v.build.executor "kubernetes" -}}
{{- $_ := set $r2d "executor" "kubernetes" -}}
{{- $k := dict "namespace" .Release.Namespace "docker_host" (include "bindery.engineSocket" .) "sticky_builds" $v.build.kubernetes.stickyBuilds "max_age_secs" (int $v.build.kubernetes.maxAgeSecs) "node_selector" $v.build.kubernetes.nodeSelector -}}
{{- with $v.build.kubernetes.pushSecret }}{{ $_ := set $k "push_secret" . }}{{ end -}}
{{- $_ := set $build "kubernetes" $k -}}
{{- end -}}
{{- $cull := dict "enabled" $v.cull.enabled "every_secs" (int $v.cull.everySecs) "policies" $v.cull.policies -}}
{{- if include "bindery.leaderElection" . }}{{ $_ := set $cull "leader" (dict "namespace" .Release.Namespace "lease" (printf "%s-culler" (include "bindery.fullname" .)) "lease_secs" (int $v.cull.leaseSecs)) }}{{ end -}}
{{- $plugins := dict $v.build.strategy (dict "config" $r2d) "idle" (dict "config" (dict "timeout_secs" (int $v.cull.timeoutSecs) "max_age_secs" (int $v.cull.maxAgeSecs) "cull_users" true)) -}}
{{- $plugins = mergeOverwrite $plugins (deepCopy $v.plugins) -}}
{{- $oci := dict "insecure_registries" $v.pluginRegistry.insecureRegistries -}}
{{- with $v.pluginRegistry.username }}{{ $_ := set $oci "username" . }}{{ $_ := set $oci "password" (dict "env" "PLUGIN_REGISTRY_PASSWORD") }}{{ end -}}
{{- $pool := dict "max_servers" (int $v.warmPool.maxServers) "policy" $v.warmPool.policy "half_life_secs" (int $v.warmPool.halfLifeSecs) "every_secs" (int $v.warmPool.everySecs) -}}
{{- $config := dict "warm_pool" $pool "listen" "0.0.0.0:8585" "data_dir" "/var/lib/bindery" "web" $web "registry" $registry "hub" $hub "quota" $quota "build" $build "cull" $cull "plugins" $plugins "plugin_runtime" (dict "oci" $oci "compile_cache_dir" "/var/lib/bindery/plugin-cache" "memory_budget_mib" (int $v.pluginRuntime.memoryBudgetMiB)) -}}
{{- include "bindery.federation" (dict "values" $v "member" $v.federation.member "into" $config) -}}
{{- toToml (mergeOverwrite $config (deepCopy $v.extraConfig)) -}}
{{- end -}}

{{/* Sets `into`'s federation key: [federation] for `member` (empty: a front); nothing without members. */}}
{{- define "bindery.federation" -}}
{{- $f := .values.federation -}}
{{- if $f.members -}}
{{- $members := dict -}}
{{- range $name, $m := $f.members }}{{ $_ := set $members $name (dict "url" $m.url "weight" (float64 (default 1 $m.weight)) "prime" (default false $m.prime)) }}{{ end -}}
{{- $c := $f.check -}}
{{- $check := dict "period_secs" (float64 $c.periodSecs) "failed_period_secs" (float64 $c.failedPeriodSecs) "timeout_secs" (float64 $c.timeoutSecs) "retries" (int $c.retries) "jitter" (float64 $c.jitter) -}}
{{- $out := dict "members" $members "check" $check "pod_headroom" (int $f.podHeadroom) "cookie_age_hours" (int $f.cookieAgeHours) -}}
{{- with .member }}{{ $_ := set $out "member" . }}{{ end -}}
{{- $_ := set .into "federation" $out -}}
{{- end -}}
{{- end -}}

{{/* The front's bindery.toml: the pages, the providers (for placement) and the federation, no hub, registry or builds. */}}
{{- define "bindery.frontConfig" -}}
{{- $v := .Values -}}
{{- $web := dict "base_url" $v.web.baseUrl "max_connections" (int $v.web.maxConnections) "header_read_timeout_secs" (int $v.web.headerReadTimeoutSecs) "build_token_secret" (dict "env" "BINDERHUB_BUILD_TOKEN_SECRET") -}}
{{- with $v.web.trustedProxies }}{{ $_ := set $web "trusted_proxies" . }}{{ end -}}
{{- with $v.web.badgeBaseUrl }}{{ $_ := set $web "badge_base_url" . }}{{ end -}}
{{- $config := dict "listen" "0.0.0.0:8585" "data_dir" "/var/lib/bindery" "web" $web "plugins" (deepCopy $v.plugins) -}}
{{- include "bindery.federation" (dict "values" $v "member" "" "into" $config) -}}
{{- toToml $config -}}
{{- end -}}

{{/* Whether the image cleaner runs: build pods use a node's engine. */}}
{{- define "bindery.imageCleaner" -}}
{{- if and .Values.imageCleaner.enabled (eq .Values.build.executor "kubernetes") -}}true{{- end -}}
{{- end -}}

{{/* Build nodes: the builders' and the cleaner's scheduling, as the build pods'. */}}
{{- define "bindery.buildNodeScheduling" -}}
{{- with .Values.build.kubernetes.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
tolerations:
  - { key: hub.jupyter.org/dedicated, operator: Equal, value: user, effect: NoSchedule }
  - { key: hub.jupyter.org_dedicated, operator: Equal, value: user, effect: NoSchedule }
  {{- with .Values.tolerations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
