{{/* Names, labels and the list of processes this release runs. */}}

{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "herald.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "herald.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "herald.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herald
{{- end -}}

{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "herald.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Every process of the release, as YAML {items: [...]}; each item has
  component (DNS name part), args (herald CLI), channel/lane/group/topic (channel consumers),
  api (the HTTP API), replicas (fixed; absent when KEDA or an HPA owns it), scale (KEDA settings),
  resources, priorityClassName.
*/}}
{{- define "herald.processes" -}}
items:
{{- range $name, $p := .Values.processes }}
{{- if $p.enabled }}
  - component: {{ $name }}
    args: [run, {{ default $name $p.process }}{{ range $p.extraArgs }}, {{ . | quote }}{{ end }}{{ if gt (int (default 1 $p.workers)) 1 }}, --workers, {{ $p.workers | quote }}{{ end }}]
    replicas: {{ $p.replicas }}
    resources: {{ toJson (default $.Values.defaultResources $p.resources) }}
    priorityClassName: {{ default "" $p.priorityClassName | quote }}
{{- end }}
{{- end }}
{{- if .Values.api.enabled }}
{{- include "herald.apiGuards" . }}
  - component: api
    args: [run, api]
    api: true
    {{- if not .Values.api.autoscaling.enabled }}
    replicas: {{ .Values.api.replicas }}
    {{- end }}
    resources: {{ toJson (default .Values.defaultResources .Values.api.resources) }}
{{- end }}
{{- range $channel, $lanes := .Values.channels }}
{{- range $lane, $c := $lanes }}
{{- $cfg := merge (deepCopy $c) (deepCopy (default dict (get (default dict $.Values.lanes) $lane))) $.Values.channelDefaults }}
{{- if $cfg.enabled }}
{{- if not (has $lane (list "priority" "bulk")) }}
{{- fail (printf "channels.%s.%s: lane must be priority or bulk" $channel $lane) }}
{{- end }}
{{- if gt (int $cfg.maxReplicas) (int $.Values.kafka.partitions) }}
{{- fail (printf "channels.%s.%s.maxReplicas (%v) exceeds kafka.partitions (%v): extra consumers would sit idle" $channel $lane $cfg.maxReplicas $.Values.kafka.partitions) }}
{{- end }}
{{- if gt (mul (int $cfg.maxReplicas) (int $cfg.workers)) (int $.Values.kafka.partitions) }}
{{- fail (printf "channels.%s.%s: maxReplicas × workers (%v × %v) exceeds kafka.partitions (%v): extra consumers would sit idle" $channel $lane $cfg.maxReplicas $cfg.workers $.Values.kafka.partitions) }}
{{- end }}
{{- if gt (int $cfg.minReplicas) (int $cfg.maxReplicas) }}
{{- fail (printf "channels.%s.%s: minReplicas > maxReplicas" $channel $lane) }}
{{- end }}
  - component: {{ printf "channel-%s-%s" ($channel | replace "_" "-") $lane }}
    args: [run, channel, --channel, {{ $channel }}, --lane, {{ $lane }}{{ if gt (int $cfg.workers) 1 }}, --workers, {{ $cfg.workers | quote }}{{ end }}]
    channel: {{ $channel }}
    lane: {{ $lane }}
    group: {{ printf "herald-channel-%s-%s" $channel $lane }}
    topic: {{ printf "%s.channel.%s.%s" $.Values.topicPrefix $channel $lane }}
    scale: {{ toJson (omit $cfg "resources" "enabled" "workers" "priorityClassName") }}
    resources: {{ toJson (default $.Values.defaultResources $cfg.resources) }}
    priorityClassName: {{ default "" $cfg.priorityClassName | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment of a container: .root, .channel (channel consumers), .api (the HTTP API). */}}
{{- define "herald.env" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ .root.Values.kafka.bootstrapServers | quote }}
- name: HERALD_TOPIC_PREFIX
  value: {{ .root.Values.topicPrefix | quote }}
- name: HERALD_PARTITIONS
  value: {{ .root.Values.kafka.partitions | quote }}
- name: HERALD_METRICS_HOST
  value: "0.0.0.0"
- name: HERALD_METRICS_PORT
  value: {{ .root.Values.metrics.port | quote }}
- name: HERALD_RUNTIME__SHUTDOWN_GRACE_S
  value: {{ .root.Values.shutdownGraceSeconds | quote }}
- name: HERALD_CLASSIFIER__ROUTING_FILE
  value: /etc/herald/routing/routing.yaml
{{- if and .root.Values.templates.enabled .channel }}
- name: HERALD_TEMPLATES_DIR
  value: /etc/herald/templates
{{- end }}
{{- range $k, $v := .root.Values.env }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{- $secret := deepCopy .root.Values.secretEnv.common }}
{{- if .channel }}
{{- $secret = merge (deepCopy (default dict (get .root.Values.secretEnv.channels .channel))) $secret }}
{{- end }}
{{- if .api }}
{{- $jwt := .root.Values.api.jwt }}
- name: HERALD_API__HOST
  value: "0.0.0.0"
- name: HERALD_API__PORT
  value: {{ .root.Values.api.port | quote }}
- name: HERALD_API__JWT_ALGORITHM
  value: {{ $jwt.algorithm | quote }}
- name: HERALD_API__JWT_AUDIENCE
  value: {{ $jwt.audience | quote }}
{{- with $jwt.issuer }}
- name: HERALD_API__JWT_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with .root.Values.api.forwardedAllowIps }}
- name: FORWARDED_ALLOW_IPS
  value: {{ . | quote }}
{{- end }}
{{- with .root.Values.api.sesFeedbackTopicArns }}
- name: HERALD_PROVIDERS__FEEDBACK__SNS_TOPIC_ARNS
  value: {{ toJson . | quote }}
{{- end }}
{{- with $jwt.secretRef }}
{{- $_ := set $secret "HERALD_API__JWT_SECRET" . }}
{{- end }}
{{- with $jwt.publicKeyRef }}
{{- $_ := set $secret "HERALD_API__JWT_PUBLIC_KEY" . }}
{{- end }}
{{- with $jwt.tenantKeysRef }}
{{- $_ := set $secret "HERALD_API__JWT_TENANT_KEYS" . }}
{{- end }}
{{- end }}
{{- range $k, $ref := $secret }}
- name: {{ $k }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name | quote }}
      key: {{ $ref.key | quote }}
      {{- if hasKey $ref "optional" }}
      optional: {{ $ref.optional }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* Template files as ConfigMap keys ("/" is not allowed in a key). */}}
{{- define "herald.templateKey" -}}
{{- . | trimPrefix "files/templates/" | replace "/" "__" -}}
{{- end -}}

{{/* path under templates_dir -> content: the shipped templates, then values.templates.overrides. */}}
{{- define "herald.templateFiles" -}}
{{- $files := dict -}}
{{- range $path, $bytes := .Files.Glob "files/templates/**" -}}
{{- $_ := set $files ($path | trimPrefix "files/templates/") (toString $bytes) -}}
{{- end -}}
{{- range $path, $content := .Values.templates.overrides -}}
{{- $_ := set $files $path $content -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{- define "herald.terminationGracePeriodSeconds" -}}
{{- if lt (int .Values.terminationExtraSeconds) 1 -}}
{{- fail "terminationExtraSeconds must be at least 1: Kubernetes must wait longer than Herald's shutdown grace" -}}
{{- end -}}
{{- add (ceil .Values.shutdownGraceSeconds | int) (int .Values.terminationExtraSeconds) -}}
{{- end -}}

{{- define "herald.podSpecCommon" -}}
serviceAccountName: {{ include "herald.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The API's key configuration, refused at render time rather than by a crash-looping pod. */}}
{{- define "herald.apiGuards" -}}
{{- $jwt := .Values.api.jwt -}}
{{- range $k := list "HERALD_API__JWT_SECRET" "HERALD_API__JWT_PUBLIC_KEY" -}}
{{- if hasKey $.Values.env $k -}}
{{- fail (printf "env.%s: reference the key with api.jwt.secretRef / api.jwt.publicKeyRef, never inline it" $k) -}}
{{- end -}}
{{- end -}}
{{- range $ref := list (list "secretRef" $jwt.secretRef) (list "publicKeyRef" $jwt.publicKeyRef) -}}
{{- $v := index $ref 1 -}}
{{- if and $v (not (and (kindIs "map" $v) $v.name $v.key)) -}}
{{- fail (printf "api.jwt.%s must be {name: <Secret>, key: <key>}" (index $ref 0)) -}}
{{- end -}}
{{- end -}}
{{- if eq $jwt.algorithm "HS256" -}}
{{- if not $jwt.secretRef -}}
{{- fail "api.jwt.algorithm HS256 needs api.jwt.secretRef (a Secret with the 32+ byte key)" -}}
{{- end -}}
{{- else if eq $jwt.algorithm "EdDSA" -}}
{{- if not (or $jwt.publicKeyRef $jwt.secretRef) -}}
{{- fail "api.jwt.algorithm EdDSA needs api.jwt.publicKeyRef (or the private key in api.jwt.secretRef)" -}}
{{- end -}}
{{- else -}}
{{- fail (printf "api.jwt.algorithm must be HS256 or EdDSA, not %v" $jwt.algorithm) -}}
{{- end -}}
{{- if and .Values.api.autoscaling.enabled (gt (int .Values.api.autoscaling.minReplicas) (int .Values.api.autoscaling.maxReplicas)) -}}
{{- fail "api.autoscaling: minReplicas > maxReplicas" -}}
{{- end -}}
{{- end -}}
