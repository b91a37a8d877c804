{{- define "orchestrator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "orchestrator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "orchestrator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "orchestrator.serveConfig" -}}
proxy_location: HeadOnly
http_options:
  host: 0.0.0.0
  port: {{ .Values.service.port }}
applications:
  - name: orchestrator
    route_prefix: /
    import_path: orchestrator.serve.entry:app
    args:
      model_name: {{ .Values.modelName | quote }}
      store: {{ .Values.artifacts.path | quote }}
      policy: {{ .Values.routing.policy | quote }}
      slo_ttft_s: {{ .Values.routing.sloTtftSeconds }}
      slo_tpot_s: {{ .Values.routing.sloTpotSeconds }}
      plan: {{ .Values.plan | quote }}
      serving: {{ toJson .Values.serving }}
      {{- if .Values.scaling }}
      scaling: {{ toJson .Values.scaling }}
      {{- end }}
    {{- if .Values.autoscalingPolicy }}
    autoscaling_policy: {{ toJson .Values.autoscalingPolicy }}
    {{- end }}
{{- end -}}

{{/* API keys reach every Ray pod from a Secret: the app is built wherever Serve runs its
build task, and only the keys' digests go further. */}}
{{- define "orchestrator.keyEnv" -}}
{{- if .Values.apiKeys.secretName }}
- name: {{ .Values.serving.api_keys_env | default "ORCHESTRATOR_API_KEYS" }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.apiKeys.secretName }}
      key: {{ .Values.apiKeys.secretKey }}
{{- end }}
{{- end -}}

{{- define "orchestrator.volumes" -}}
volumes:
  - name: artifacts
    persistentVolumeClaim:
      claimName: {{ .Values.artifacts.persistentVolumeClaim }}
{{- end -}}

{{- define "orchestrator.volumeMounts" -}}
volumeMounts:
  - name: artifacts
    mountPath: {{ .Values.artifacts.path }}
{{- end -}}
