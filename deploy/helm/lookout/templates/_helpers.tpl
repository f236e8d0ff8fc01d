{{/* The chart's name and a release-scoped name for each object. */}}
{{- define "lookout.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries; "lookout.selector" is the subset a Service selects by. */}}
{{- define "lookout.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/part-of: lookout
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "lookout.selector" -}}
app.kubernetes.io/name: lookout
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "lookout.serviceAccount" -}}
{{ include "lookout.fullname" . }}-retrain-trigger
{{- end -}}

{{/* The environment every Lookout process reads (core's CommonSettings), then the
     service's own values and secrets. Argument: dict "root" $ "name" <service> "svc" <values>. */}}
{{- define "lookout.env" -}}
{{- $v := .root.Values -}}
- name: LOOKOUT_KAFKA_BOOTSTRAP
  value: {{ required "kafka.bootstrap is required (host:port of your Kafka brokers)" $v.kafka.bootstrap | quote }}
{{- with $v.kafka.topicPrefix }}
- name: LOOKOUT_TOPIC_PREFIX
  value: {{ . | quote }}
{{- end }}
- name: LOOKOUT_KAFKA_TOPIC_PARTITIONS
  value: {{ $v.kafka.topicPartitions | quote }}
- name: LOOKOUT_KAFKA_TOPIC_REPLICATION
  value: {{ $v.kafka.topicReplication | quote }}
- name: LOOKOUT_KAFKA_SECURITY_PROTOCOL
  value: {{ $v.kafka.securityProtocol | quote }}
{{- with $v.kafka.saslMechanism }}
- name: LOOKOUT_KAFKA_SASL_MECHANISM
  value: {{ . | quote }}
{{- end }}
{{- with $v.kafka.saslUsername }}
- name: LOOKOUT_KAFKA_SASL_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if $v.kafka.saslPasswordSecret.name }}
- name: LOOKOUT_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $v.kafka.saslPasswordSecret.name | quote }}
      key: {{ $v.kafka.saslPasswordSecret.key | quote }}
{{- end }}
{{- if $v.kafka.tlsSecret.name }}
- name: LOOKOUT_KAFKA_SSL_CAFILE
  value: /etc/lookout/kafka-tls/ca.crt
{{- if $v.kafka.tlsSecret.mutual }}
- name: LOOKOUT_KAFKA_SSL_CERTFILE
  value: /etc/lookout/kafka-tls/tls.crt
- name: LOOKOUT_KAFKA_SSL_KEYFILE
  value: /etc/lookout/kafka-tls/tls.key
{{- end }}
{{- end }}
- name: LOOKOUT_CLICKHOUSE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ required "clickhouse.dsnSecret.name is required (a Secret holding http(s)://user:password@host:8123)" $v.clickhouse.dsnSecret.name | quote }}
      key: {{ $v.clickhouse.dsnSecret.key | quote }}
- name: LOOKOUT_CLICKHOUSE_DATABASE
  value: {{ $v.clickhouse.database | quote }}
- name: LOOKOUT_CLICKHOUSE_VERIFY
  value: {{ $v.clickhouse.verify | quote }}
- name: LOOKOUT_RETENTION_DAYS
  value: {{ $v.retentionDays | quote }}
- name: LOOKOUT_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: LOOKOUT_LOG_FORMAT
  value: {{ $v.logFormat | quote }}
- name: LOOKOUT_HTTP_HOST
  value: "0.0.0.0"
- name: LOOKOUT_HTTP_PORT
  value: "8080"
{{- if and (eq .name "retrain-trigger") $v.kubernetesLauncher.enabled }}
- name: LOOKOUT_RETRAIN_LAUNCHER
  value: kubernetes
- name: LOOKOUT_RETRAIN_K8S_NAMESPACE
  value: {{ $v.kubernetesLauncher.namespace | default .root.Release.Namespace | quote }}
- name: LOOKOUT_RETRAIN_K8S_IMAGE
  value: {{ $v.kubernetesLauncher.image | quote }}
- name: LOOKOUT_RETRAIN_K8S_GPUS
  value: {{ $v.kubernetesLauncher.gpus | quote }}
{{- if $v.kafka.saslPasswordSecret.name }}
- name: LOOKOUT_RETRAIN_K8S_SASL_SECRET
  value: {{ $v.kafka.saslPasswordSecret.name | quote }}
- name: LOOKOUT_RETRAIN_K8S_SASL_SECRET_KEY
  value: {{ $v.kafka.saslPasswordSecret.key | quote }}
{{- end }}
{{- end }}
{{- range $name, $value := .svc.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- range .svc.secretEnv }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.name is required (the Secret holding the services' shared secrets)" $v.secrets.name | quote }}
      key: {{ required (printf "secrets.keys has no key for %s" .) (index $v.secrets.keys .) | quote }}
{{- end }}
{{- end -}}
