{{/* Labels every object carries. */}}
{{- define "temper.labels" -}}
app.kubernetes.io/part-of: temper
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* image: (dict "root" $ "image" .Values.agent.image "tag" "<override>") */}}
{{- define "temper.image" -}}
{{- $root := .root -}}
{{- $tag := .tag | default .image.tag | default $root.Values.imageTag | default $root.Chart.AppVersion -}}
{{- if $root.Values.imageRegistry -}}
{{ printf "%s/%s:%s" $root.Values.imageRegistry .image.repository $tag }}
{{- else -}}
{{ printf "%s:%s" .image.repository $tag }}
{{- end -}}
{{- end -}}

{{- define "temper.pullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The monitoring.coreos.com/v1 API is served by the cluster. */}}
{{- define "temper.hasPrometheusOperator" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/* The DNS name in every agent's gRPC serving certificate, which the gateway verifies. */}}
{{- define "temper.agentServerName" -}}
infera-agent.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* The Secret with ca.crt, tls.crt and tls.key of the agents' gRPC listener. */}}
{{- define "temper.agentTLSSecret" -}}
{{- .Values.gateway.agentTLS.existingSecret | default "infera-agent-grpc-tls" -}}
{{- end -}}
