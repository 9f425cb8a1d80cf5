{{/* Names */}}
{{- define "bindery.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "bindery.labels" -}}
app.kubernetes.io/name: bindery
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bindery.selector" -}}
app.kubernetes.io/name: bindery
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bindery.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "bindery.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ .Values.serviceAccount.name | default (include "bindery.fullname" .) }}
{{- else -}}{{ .Values.serviceAccount.name | default "default" }}{{- end -}}
{{- end -}}

{{- define "bindery.pushSecretName" -}}{{ include "bindery.fullname" . }}-push{{- end -}}

{{/*
The registry, as Zero to BinderHub describes it, resolved once:
  url: the registry API (config.DockerRegistry.url, else registry.url, else derived from
       config.BinderHub.image_prefix: a host in it, or Docker Hub)
  authUrl: the key of the credentials in the push config.json (config.DockerRegistry.auth_config_url,
       else registry.url, else Docker Hub's https://index.docker.io/v1/ for Docker Hub)
  username/password: registry.username/password; a GCR service-account JSON key (a string, or
       pasted as a mapping) is used with the user name _json_key, as GCR expects
*/}}
{{- define "bindery.registry" -}}
{{- $cfg := .Values.config | default dict -}}
{{- $bh := get $cfg "BinderHub" | default dict -}}
{{- $dr := get $cfg "DockerRegistry" | default dict -}}
{{- $reg := .Values.registry | default dict -}}
{{- $password := $reg.password | default "" -}}
{{- if kindIs "map" $password -}}{{- $password = toJson $password -}}{{- end -}}
{{- $password = toString $password | trim -}}
{{- $username := $reg.username | default "" -}}
{{- if and (not $username) (hasPrefix "{" $password) -}}{{- $username = "_json_key" -}}{{- end -}}
{{- $prefix := get $bh "image_prefix" | default $reg.prefix | default (get $cfg "image_prefix") | default "" -}}
{{- $useRegistry := get $bh "use_registry" -}}
{{- if kindIs "invalid" $useRegistry -}}{{- $useRegistry = get $reg "enabled" -}}{{- end -}}
{{- if kindIs "invalid" $useRegistry -}}{{- $useRegistry = or (get $dr "url") $reg.url $username (get $cfg "registry_url") -}}{{- end -}}
{{- $useRegistry = not (not $useRegistry) -}}
{{- $host := "" -}}
{{- $first := splitList "/" $prefix | first | default "" -}}
{{- if and (contains "/" $prefix) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}{{- $host = $first -}}{{- end -}}
{{- $url := get $dr "url" | default $reg.url | default (get $cfg "registry_url") | default "" -}}
{{- if and (not $url) $useRegistry -}}
{{- $url = ternary (printf "https://%s" $host) "https://registry-1.docker.io" (ne $host "") -}}
{{- end -}}
{{- $dockerHub := not (not (or (contains "docker.io" $url) (and $useRegistry (eq $host "")))) -}}
{{- $authUrl := get $dr "auth_config_url" | default $reg.url | default (ternary "https://index.docker.io/v1/" $url $dockerHub) -}}
{{- dict "enabled" $useRegistry "url" (ternary $url "" $useRegistry) "authUrl" $authUrl "username" $username "password" $password "tokenUrl" (get $dr "token_url" | default "") "prefix" $prefix | toJson -}}
{{- end -}}

{{/* Settings whose values are secrets: they go to the Secret (as BINDERY_* variables), never the ConfigMap. */}}
{{- /* Every setting app/config.py marks secret (tests/charts checks the two lists agree). */ -}}
{{- define "bindery.secretNames" -}}github_token github_client_secret gitlab_token registry_password hub_api_token flower_basic_auth git_credentials git_ssh_key build_token_secret hub_oauth_client_secret session_secret webhook_secret webhook_repositories prebuild_tokens proxy_auth_token{{- end -}}

{{/*
Bindery's settings: every lower-case key of .Values.config, then what the chart and the
Zero to BinderHub layout say. Explicit lower-case settings win over translated ones.
*/}}
{{- define "bindery.allSettings" -}}
{{- $v := .Values -}}
{{- $cfg := $v.config | default dict -}}
{{- $bh := get $cfg "BinderHub" | default dict -}}
{{- $gh := get $cfg "GitHubRepoProvider" | default dict -}}
{{- $reg := include "bindery.registry" . | fromJson -}}
{{- $s := dict -}}
{{- $_ := set $s "builder" "kubernetes" -}}
{{- $_ := set $s "kubernetes_namespace" .Release.Namespace -}}
{{- $_ := set $s "listen_address" "0.0.0.0" -}}
{{- /* behind the chart's own ingress the client is the last X-Forwarded-For entry the ingress adds */ -}}
{{- if $v.ingress.enabled }}{{- $_ := set $s "trusted_proxy_hops" 1 -}}{{- end -}}
{{- $_ := set $s "port" ($v.web.port | int) -}}
{{- $_ := set $s "web_workers" ($v.web.workers | int) -}}
{{- $_ := set $s "build_concurrency" ($v.workers.build.concurrency | int) -}}
{{- $_ := set $s "launch_concurrency" ($v.workers.launch.concurrency | int) -}}
{{- $_ := set $s "flower_port" ($v.flower.port | int) -}}
{{- $_ := set $s "build_pod_image" $v.builder.image -}}
{{- $socket := $v.builder.hostSocket -}}
{{- if eq $v.builder.engine "dind" -}}{{- $socket = printf "%s/docker.sock" $v.builder.dind.socketDir -}}{{- end -}}
{{- if eq $v.builder.engine "podman" -}}{{- $socket = printf "%s/podman.sock" $v.builder.podman.socketDir -}}{{- end -}}
{{- $_ := set $s "build_pod_engine_socket" $socket -}}
{{- with $v.builder.nodeSelector }}{{- $_ := set $s "build_pod_node_selector" . -}}{{- end -}}
{{- with $v.builder.tolerations }}{{- $_ := set $s "build_pod_tolerations" . -}}{{- end -}}
{{- with $v.builder.affinity }}{{- $_ := set $s "build_pod_affinity" . -}}{{- end -}}
{{- with $v.builder.requests }}{{- $_ := set $s "build_pod_requests" . -}}{{- end -}}
{{- with $v.builder.limits }}{{- $_ := set $s "build_pod_limits" . -}}{{- end -}}
{{- if $v.builder.stickyBuilds }}{{- $_ := set $s "build_pod_sticky" true -}}{{- end -}}
{{- with $v.builder.nodes }}{{- $_ := set $s "build_pod_nodes" . -}}{{- end -}}
{{- /* redis_url carries the password: REDIS_URL in the Secret (bindery.secretEnv), never here */ -}}
{{- if $reg.enabled -}}
{{- $_ := set $s "registry_url" $reg.url -}}
{{- if $reg.username -}}
{{- $_ := set $s "registry_username" $reg.username -}}
{{- $_ := set $s "registry_password" $reg.password -}}
{{- $_ := set $s "build_pod_push_secret" (include "bindery.pushSecretName" .) -}}
{{- end -}}
{{- end -}}
{{- with $reg.prefix }}{{- $_ := set $s "image_prefix" . -}}{{- end -}}
{{- /* The hub has two addresses: hub_url, where browsers are sent (ready events, logins), and
hub_api_url, where Bindery calls its API; with the bundled hub the API is reached in-cluster. */ -}}
{{- $hubUrl := include "bindery.hubUrl" . -}}
{{- if $hubUrl -}}
{{- $_ := set $s "hub_url" $hubUrl -}}
{{- $_ := set $s "launcher" "jupyterhub" -}}
{{- if $v.jupyterhub.enabled }}{{- $_ := set $s "hub_api_url" "http://proxy-public/hub/api" -}}{{- end -}}
{{- end -}}
{{- $hubToken := dig "hub" "services" "binder" "apiToken" "" ($v.jupyterhub | default dict) -}}
{{- with $hubToken }}{{- $_ := set $s "hub_api_token" . -}}{{- end -}}
{{- if $v.auth.enabled -}}
{{- $_ := set $s "auth_enabled" true -}}
{{- $_ := set $s "hub_oauth_client_id" (printf "service-%s" $v.auth.serviceName) -}}
{{- $_ := set $s "hub_oauth_redirect_url" (include "bindery.authRedirectUrl" .) -}}
{{- $_ := set $s "session_secret" (include "bindery.sessionSecret" .) -}}
{{- with $v.auth.maxServersPerUser }}{{- $_ := set $s "max_servers_per_user" (int .) -}}{{- end -}}
{{- end -}}
{{- $ghToken := get $gh "access_token" | default (dig "accessToken" "" ($v.github | default dict)) -}}
{{- with $ghToken }}{{- $_ := set $s "github_token" . -}}{{- end -}}
{{- with $v.flower.basicAuth }}{{- $_ := set $s "flower_basic_auth" . -}}{{- end -}}
{{- /* the page a launched server opens: Zero to JupyterHub's singleuser.defaultUrl, as BinderHub reads it */ -}}
{{- with dig "singleuser" "defaultUrl" "" ($v.jupyterhub | default dict) }}{{- $_ := set $s "default_url" . -}}{{- end -}}
{{- /* pages on this origin (or * for any) may use the API and the servers it launches: BinderHub's cors.allowOrigin, or config.BinderHub.cors_allow_origin; Bindery passes it on to each server (--ServerApp.allow_origin, the hub's spawner mixin) */ -}}
{{- with dig "allowOrigin" "" ($v.cors | default dict) | default (get $bh "cors_allow_origin") }}{{- $_ := set $s "cors_allow_origin" . -}}{{- end -}}
{{- range $key, $value := $cfg -}}
{{- if regexMatch "^[a-z][a-z0-9_]*$" $key }}{{- $_ := set $s $key $value -}}{{- end -}}
{{- end -}}
{{- toJson $s -}}
{{- end -}}

{{/* The hub's public address, the one browsers open: config.BinderHub.hub_url (or config.hub_url), with
one trailing slash. Launches through the hub (the bundled hub, launcher jupyterhub, auth.enabled) cannot
do without it: the in-cluster name Bindery reaches the hub by means nothing to a browser. */}}
{{- define "bindery.hubUrl" -}}
{{- $v := .Values -}}
{{- $cfg := $v.config | default dict -}}
{{- $hubUrl := get (get $cfg "BinderHub" | default dict) "hub_url" | default (get $cfg "hub_url") | default "" -}}
{{- $viaHub := or ($v.jupyterhub.enabled | default false) (eq (toString (get $cfg "launcher")) "jupyterhub") $v.auth.enabled -}}
{{- if and $viaHub (not $hubUrl) -}}
{{- fail "launches go through JupyterHub (jupyterhub.enabled, config.launcher: jupyterhub or auth.enabled), so browsers are sent to the hub: set config.BinderHub.hub_url to the hub's public address, e.g. https://hub.example.org/ (Bindery itself reaches the bundled hub in-cluster at http://proxy-public/hub/api; config.hub_api_url overrides that)" -}}
{{- end -}}
{{- with $hubUrl }}{{ printf "%s/" (trimSuffix "/" .) }}{{ end -}}
{{- end -}}

{{/* auth.enabled: where the hub sends users back after they log in (the service's oauth_redirect_uri). */}}
{{- define "bindery.authRedirectUrl" -}}
{{- $v := .Values -}}
{{- if $v.auth.redirectUrl -}}{{ $v.auth.redirectUrl }}
{{- else if and $v.ingress.enabled $v.ingress.host -}}
{{ ternary "https" "http" (not (empty $v.ingress.tlsSecretName)) }}://{{ $v.ingress.host }}/oauth_callback
{{- else -}}
{{- fail "auth.enabled needs auth.redirectUrl (or the chart's ingress with a host): the hub sends users back there after they log in" -}}
{{- end -}}
{{- end -}}

{{/* auth.enabled: the key that signs session cookies; auth.sessionSecret, else the one this release's
Secret already holds (kept on upgrade, so logins survive), else a new one. */}}
{{- define "bindery.sessionSecret" -}}
{{- if .Values.auth.sessionSecret -}}{{ .Values.auth.sessionSecret }}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "bindery.fullname" .) | default dict -}}
{{- $kept := dig "data" "BINDERY_SESSION_SECRET" "" $existing -}}
{{- if $kept }}{{ $kept | b64dec }}{{ else }}{{ randAlphaNum 48 }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* The bundled Redis's password: redis.password, else the one this release's Secret already holds
(kept on upgrade, so Redis and its clients stay in step), else a new one. */}}
{{- define "bindery.redisPassword" -}}
{{- if .Values.redis.password -}}{{ .Values.redis.password }}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "bindery.fullname" .) | default dict -}}
{{- $kept := dig "data" "REDIS_PASSWORD" "" $existing -}}
{{- if $kept }}{{ $kept | b64dec }}{{ else }}{{ randAlphaNum 32 }}{{ end -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap's settings: everything but secrets. */}}
{{- define "bindery.settings" -}}
{{- $s := include "bindery.allSettings" . | fromJson -}}
{{- range $name := splitList " " (include "bindery.secretNames" .) }}{{- $_ := unset $s $name -}}{{- end -}}
{{- toYaml $s -}}
{{- end -}}

{{/* The Secret's variables: secret settings as BINDERY_<NAME>; REDIS_URL with the password (the bundled
Redis's, which redis-server and its readiness probe read from REDIS_PASSWORD; or redis.externalUrl). */}}
{{- define "bindery.secretEnv" -}}
{{- $s := include "bindery.allSettings" . | fromJson -}}
{{- $env := dict -}}
{{- range $name := splitList " " (include "bindery.secretNames" .) -}}
{{- $value := get $s $name -}}
{{- if $value }}{{- $_ := set $env (printf "BINDERY_%s" (upper $name)) (ternary (toString $value) (toJson $value) (kindIs "string" $value)) -}}{{- end -}}
{{- end -}}
{{- if .Values.redis.enabled -}}
{{- $password := include "bindery.redisPassword" . -}}
{{- $_ := set $env "REDIS_PASSWORD" $password -}}
{{- $_ := set $env "REDIS_URL" (printf "redis://:%s@%s-redis:6379/0" $password (include "bindery.fullname" .)) -}}
{{- else -}}
{{- $_ := set $env "REDIS_URL" .Values.redis.externalUrl -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/* Checksums so pods restart when their config changes. */}}
{{- define "bindery.checksums" -}}
checksum/config: {{ include "bindery.settings" . | sha256sum }}
checksum/secret: {{ include "bindery.secretEnv" . | sha256sum }}
{{- end -}}

{{/* The container spec shared by web, workers, beat and Flower. */}}
{{- define "bindery.container" -}}
image: {{ include "bindery.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
env:
  - name: BINDERY_CONFIG
    value: /etc/bindery/bindery.yaml
envFrom:
  - secretRef:
      name: {{ include "bindery.fullname" .root }}
volumeMounts:
  - name: config
    mountPath: /etc/bindery
    readOnly: true
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: false
  capabilities:
    drop: ["ALL"]
{{- with .resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "bindery.podCommon" -}}
serviceAccountName: {{ include "bindery.serviceAccountName" . }}
securityContext:
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "bindery.fullname" . }}
{{- end -}}
