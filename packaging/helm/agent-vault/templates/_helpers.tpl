{{/* The release's resource names and labels. */}}
{{- define "agent-vault.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agent-vault.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "agent-vault.labels" -}}
{{ include "agent-vault.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Secret holding the master password, and its key. */}}
{{- define "agent-vault.passwordSecret" -}}
{{- if .Values.masterPassword.existingSecret -}}
{{- .Values.masterPassword.existingSecret -}}
{{- else -}}
{{- printf "%s-master-password" (include "agent-vault.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding DATABASE_URL, and its key. */}}
{{- define "agent-vault.databaseSecret" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else -}}
{{- printf "%s-database" (include "agent-vault.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Refuse values that cannot work, with a message that says what to set. */}}
{{- define "agent-vault.validate" -}}
{{- if not (has .Values.store (list "sqlite" "postgres")) -}}
{{- fail (printf "store must be sqlite or postgres, not %q" .Values.store) -}}
{{- end -}}
{{- if not (or .Values.masterPassword.value .Values.masterPassword.existingSecret) -}}
{{- fail "set masterPassword.existingSecret (a Secret you created) or masterPassword.value" -}}
{{- end -}}
{{- if and (eq .Values.store "postgres") (not (or .Values.database.url .Values.database.existingSecret)) -}}
{{- fail "store: postgres needs database.existingSecret (a Secret holding DATABASE_URL) or database.url" -}}
{{- end -}}
{{- end -}}
