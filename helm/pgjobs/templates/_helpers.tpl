{{/* Names and labels shared by every object of the chart. */}}
{{- define "pgjobs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgjobs.fullname" -}}
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

{{- define "pgjobs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "pgjobs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pgjobs
{{- end }}

{{/* Selector labels of one component: include with (list $ "operator"). */}}
{{- define "pgjobs.selectorLabels" -}}
{{- $root := index . 0 }}
app.kubernetes.io/name: {{ include "pgjobs.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "pgjobs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-operator" (include "pgjobs.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest when image.digest is set (a digest pins the bytes). */}}
{{- define "pgjobs.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "pgjobs.workerImage" -}}
{{- $repo := default .Values.image.repository .Values.worker.image.repository }}
{{- if and .Values.image.digest (not .Values.worker.image.repository) (not .Values.worker.image.tag) }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.worker.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}
{{- end }}

{{- define "pgjobs.postgresqlName" -}}
{{- printf "%s-postgresql" (include "pgjobs.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pgjobs.postgresqlHost" -}}
{{- printf "%s.%s.svc" (include "pgjobs.postgresqlName" .) .Release.Namespace }}
{{- end }}

{{/* The Secret with the database URL and password. */}}
{{/* With neither existingSecret, url nor postgresql.enabled, the chart expects
     a Secret named <fullname>-database made by hand (NOTES.txt tells how). */}}
{{- define "pgjobs.secretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else }}
{{- printf "%s-database" (include "pgjobs.fullname" .) }}
{{- end }}
{{- end }}

{{/* true when the chart creates the database Secret */}}
{{- define "pgjobs.createSecret" -}}
{{- if and (not .Values.database.existingSecret) (or .Values.database.url .Values.postgresql.enabled) }}true{{ end }}
{{- end }}

{{- define "pgjobs.databaseURL" -}}
{{- if .Values.postgresql.enabled }}
{{- printf "postgresql://%s@%s:5432/%s" .Values.postgresql.user (include "pgjobs.postgresqlHost" .) .Values.postgresql.database }}
{{- else }}
{{- .Values.database.url }}
{{- end }}
{{- end }}

{{/* Environment every pgjobs container gets: the database settings. */}}
{{- define "pgjobs.databaseEnv" -}}
- name: PGJOBS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "pgjobs.secretName" . }}
      key: {{ .Values.database.urlKey }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "pgjobs.secretName" . }}
      key: {{ .Values.database.passwordKey }}
{{- end }}

{{/* /tmp is the only writable place (readOnlyRootFilesystem). */}}
{{- define "pgjobs.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}

{{/* The operator serves the worker HPA's metric as the external metrics API. */}}
{{- define "pgjobs.servesExternalMetrics" -}}
{{- if and .Values.worker.hpa.enabled .Values.worker.hpa.serveExternalMetrics }}true{{ end }}
{{- end }}

{{/* The operator's aggregated API server (external-metrics.yaml): the HPA's external metric, the
     PgJob logs API (operator.logsApi.enabled), or both. */}}
{{- define "pgjobs.servesAggregatedApi" -}}
{{- if or (include "pgjobs.servesExternalMetrics" .) .Values.operator.logsApi.enabled }}true{{ end }}
{{- end }}

{{/* Database roles (database.roles, docs/operations.md "Database roles"): with separate=true the
     workers and the operator each connect with their own login, and the login of
     pgjobs.secretName only migrates. `(list . "worker")` / `(list . "operator")`. */}}
{{- define "pgjobs.componentSecretName" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- $login := index $root.Values.database.roles $component }}
{{- if not $root.Values.database.roles.separate }}
{{- include "pgjobs.secretName" $root }}
{{- else if $login.existingSecret }}
{{- $login.existingSecret }}
{{- else }}
{{- printf "%s-database-%s" (include "pgjobs.fullname" $root) $component }}
{{- end }}
{{- end }}

{{/* The password of a component's login in the Secret the chart makes; the dev PostgreSQL
     derives one from its own when none is set. */}}
{{- define "pgjobs.componentPassword" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- $login := index $root.Values.database.roles $component }}
{{- if $login.password }}
{{- $login.password }}
{{- else if $root.Values.postgresql.enabled }}
{{- printf "%s-%s" $root.Values.postgresql.password $component }}
{{- end }}
{{- end }}

{{/* The database URL with the component's login as its user. */}}
{{- define "pgjobs.componentURL" -}}
{{- $root := index . 0 }}{{- $component := index . 1 }}
{{- $user := (index $root.Values.database.roles $component).user }}
{{- $url := include "pgjobs.databaseURL" $root }}
{{- if regexMatch "^postgres(ql)?://" $url }}
{{- regexReplaceAll "^(postgres(ql)?://)([^@/?#]*@)?" $url (printf "${1}%s@" $user) }}
{{- else }}
{{- printf "%s user=%s" $url $user }}
{{- end }}
{{- end }}

{{/* The database settings of the worker or the operator container. */}}
{{- define "pgjobs.componentDatabaseEnv" -}}
{{- $root := index . 0 }}
- name: PGJOBS_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "pgjobs.componentSecretName" . }}
      key: {{ $root.Values.database.urlKey }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "pgjobs.componentSecretName" . }}
      key: {{ $root.Values.database.passwordKey }}
{{- end }}
