{{/*
Checks of values that `prefix-operator run` would refuse and that
values.schema.json cannot express: how durations relate, a duration's
maximum, and operator.extraArgs. Each fails with the reason, before
anything is installed (templates/checks.yaml runs them). The operator's
own checks are RunArgs::validate in src/cli/validate.rs; tests/chart/flags.rs
holds the two to the same verdicts.
*/}}

{{/*
Nanoseconds of a duration in the operator's grammar (src/duration.rs; the
schema checks the grammar), read as the operator reads it: its parts added
up, each part's fraction cut to 18 digits and to whole nanoseconds. Empty
when longer than the operator's maximum, 87840h. In int64 throughout: an
integer part is at most 12 digits (longer is over the maximum in any unit)
and is compared with the maximum before it is multiplied; a fraction is
taken as two 9-digit halves.
*/}}
{{- define "prefix-operator.nanos" -}}
{{- $max := int64 "316224000000000000" }}
{{- /* unit: nanoseconds, and c, e with nanoseconds = c * 1e9 / e */}}
{{- $units := dict "h" (list 3600000000000 3600 1) "m" (list 60000000000 60 1) "s" (list 1000000000 1 1) "ms" (list 1000000 1 1000) }}
{{- $total := int64 0 }}
{{- range regexFindAll "[0-9]+([.][0-9]+)?(ms|h|m|s)" . -1 }}
{{- $u := get $units (regexFind "(ms|h|m|s)$" .) }}
{{- $int := regexReplaceAll "^0+" (regexFind "^[0-9]+" .) "" }}
{{- $frac := printf "%s000000000000000000" (regexReplaceAll "^[.]" (regexFind "[.][0-9]+" .) "") | trunc 18 }}
{{- $hi := regexReplaceAll "^0+" (substr 0 9 $frac) "" | default "0" | int64 }}
{{- $lo := regexReplaceAll "^0+" (substr 9 18 $frac) "" | default "0" | int64 }}
{{- $whole := $int | default "0" | int64 }}
{{- if or (gt (len $int) 12) (gt $whole (div $max (index $u 0))) }}
{{- $total = add1 $max }}
{{- else }}
{{- /* floor(fraction * unit): hi*c/e + lo*c/(e*1e9), exact for these units */}}
{{- $fracNanos := add (div (mul $hi (index $u 1)) (index $u 2)) (div (mul $lo (index $u 1)) (mul (index $u 2) 1000000000)) }}
{{- $total = min (add $total (mul $whole (index $u 0)) $fracNanos) (add1 $max) }}
{{- end }}
{{- end }}
{{- if le $total $max }}{{ $total }}{{ end }}
{{- end }}

{{/* (list "value name" text): its nanoseconds; fails when over the maximum. */}}
{{- define "prefix-operator.duration" -}}
{{- $n := include "prefix-operator.nanos" (index . 1) }}
{{- if not $n }}
{{- fail (printf "%s=%s is longer than the operator's maximum duration, 87840h (10 years)" (index . 0) (index . 1)) }}
{{- end }}
{{- $n }}
{{- end }}

{{- define "prefix-operator.checks" -}}
{{- if not (hasKey .Values "crds") }}
{{- fail "the values lack crds (a value this chart version added): helm upgrade --reuse-values reuses the values of the release's older chart, defaults included; upgrade with --reset-then-reuse-values, or a values file" }}
{{- end }}
{{- $_ := include "prefix-operator.duration" (list "operator.statusInterval" .Values.operator.statusInterval) }}
{{- $le := .Values.leaderElection }}
{{- if $le.enabled }}
{{- $lease := include "prefix-operator.duration" (list "leaderElection.leaseDuration" $le.leaseDuration) | int64 }}
{{- $renew := include "prefix-operator.duration" (list "leaderElection.renewDeadline" $le.renewDeadline) | int64 }}
{{- $retry := include "prefix-operator.duration" (list "leaderElection.retryPeriod" $le.retryPeriod) | int64 }}
{{- if or (eq $lease 0) (ne (mod $lease 1000000000) 0) }}
{{- fail (printf "leaderElection.leaseDuration=%s must be a whole number of seconds, at least 1s: the Lease records it in whole seconds" $le.leaseDuration) }}
{{- end }}
{{- if ge $renew $lease }}
{{- fail (printf "leaderElection.renewDeadline=%s must be shorter than leaderElection.leaseDuration=%s, so a leader stops writing before another can take over" $le.renewDeadline $le.leaseDuration) }}
{{- end }}
{{- if eq $retry 0 }}
{{- fail "leaderElection.retryPeriod must be longer than 0s: it is the pause between two tries to acquire or renew the Lease" }}
{{- end }}
{{- if ge $retry $renew }}
{{- fail (printf "leaderElection.retryPeriod=%s must be shorter than leaderElection.renewDeadline=%s, or a leader gives up between two renewals" $le.retryPeriod $le.renewDeadline) }}
{{- end }}
{{- end }}
{{- include "prefix-operator.checkExtraArgs" . }}
{{- include "prefix-operator.checkCrdsFirst" . }}
{{- end }}

{{/*
Helm builds every object of a release before it creates any, so it cannot
create a CRD (crds.enabled) and objects of it in one install: it would stop
at "no matches for kind". Where the chart sees the cluster and a CRD its
objects need is missing, say what to do instead. (Without a cluster, as
under helm template, tools such as Argo CD apply CRDs first themselves.)
*/}}
{{- define "prefix-operator.checkCrdsFirst" -}}
{{- if and .Values.crds.enabled (lookup "v1" "Namespace" "" "kube-system") }}
{{- $needs := dict }}
{{- if .Values.ulaPool.create }}{{ $_ := set $needs "ulaPool.create" "prefixpools" }}{{ end }}
{{- if .Values.dhcpv6.pool.create }}{{ $_ := set $needs "dhcpv6.pool.create" "prefixpools" }}{{ end }}
{{- if .Values.prefixClaims }}{{ $_ := set $needs "prefixClaims" "prefixclaims" }}{{ end }}
{{- range $value, $plural := $needs }}
{{- $crd := printf "%s.ipam.prefix-operator.io" $plural }}
{{- if not (lookup "apiextensions.k8s.io/v1" "CustomResourceDefinition" "" $crd) }}
{{- fail (printf "%s needs the CRD %s in the cluster first: Helm cannot create a CRD and objects of it in one install. Install without %s, then helm upgrade with it (or apply crds/ with kubectl apply --server-side first and install with --take-ownership)" $value $crd $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
operator.extraArgs: each one flag of `prefix-operator run` that the chart
does not set, given once, as --flag=value (a boolean may be bare), with a
value the operator reads.
*/}}
{{- define "prefix-operator.checkExtraArgs" -}}
{{- /* The flags the chart sets, and the values they come from. */}}
{{- $set := dict "leader-elect" "leaderElection.enabled" "lease-name" "leaderElection.leaseName" "lease-namespace" "the release namespace" "lease-duration" "leaderElection.leaseDuration" "renew-deadline" "leaderElection.renewDeadline" "retry-period" "leaderElection.retryPeriod" "http-addr" "http.bindAddress and http.port" "primary-family" "operator.primaryFamily" "max-concurrent-writes" "operator.maxConcurrentWrites" "status-interval" "operator.statusInterval" "allocation-events" "operator.allocationEvents" "log-format" "operator.logFormat" "log-level" "operator.logLevel" "load-balancer-class" "operator.loadBalancerClass" "serve-classless-load-balancers" "operator.serveClasslessLoadBalancers" "metrics-addr" "http.metrics.port" "metrics-secure" "http.metrics.secure" "metrics-cert-file" "http.metrics.certSecret" "metrics-key-file" "http.metrics.certSecret" }}
{{- /* The operator's other flags, by the kind of value they take. */}}
{{- $other := dict "kubeconfig" "text" "service-cidr-grace" "duration" "qps" "count" "http2" "bool" "identity" "text" }}
{{- $seen := dict }}
{{- range .Values.operator.extraArgs }}
{{- $arg := toString . }}
{{- if not (regexMatch "^--[a-z0-9][a-z0-9-]*(=.*)?$" $arg) }}
{{- fail (printf "operator.extraArgs: %q is not a flag of prefix-operator run: give each flag as one entry, --flag=value" $arg) }}
{{- end }}
{{- $name := regexFind "^--[a-z0-9-]+" $arg | trimPrefix "--" }}
{{- if hasKey $set $name }}
{{- fail (printf "operator.extraArgs: --%s is set by the chart from %s; set that instead (the operator refuses a flag given twice)" $name (get $set $name)) }}
{{- end }}
{{- if not (hasKey $other $name) }}
{{- fail (printf "operator.extraArgs: --%s is not a flag of prefix-operator run (the ones left to extraArgs: --%s)" $name (keys $other | sortAlpha | join ", --")) }}
{{- end }}
{{- if hasKey $seen $name }}
{{- fail (printf "operator.extraArgs: --%s is given twice; the operator refuses a flag given twice" $name) }}
{{- end }}
{{- $_ := set $seen $name true }}
{{- $kind := get $other $name }}
{{- $value := regexReplaceAll "^--[a-z0-9-]+=?" $arg "" }}
{{- if eq $kind "bool" }}
{{- if and (contains "=" $arg) (not (has $value (list "true" "false"))) }}
{{- fail (printf "operator.extraArgs: --%s takes true or false, or no value (true): got %q" $name $value) }}
{{- end }}
{{- else if not $value }}
{{- fail (printf "operator.extraArgs: --%s needs a value: --%s=VALUE" $name $name) }}
{{- else if eq $kind "duration" }}
{{- if not (regexMatch "^(0|([0-9]+([.][0-9]+)?(h|ms|m|s))+)$" $value) }}
{{- fail (printf "operator.extraArgs: --%s=%s is not a duration such as 90s, 1h, 1m30s, 1.5s or 500ms (units h, m, s, ms)" $name $value) }}
{{- end }}
{{- $_ := include "prefix-operator.duration" (list (printf "operator.extraArgs --%s" $name) $value) }}
{{- else if eq $kind "count" }}
{{- $digits := regexReplaceAll "^0+" $value "" }}
{{- if or (not (regexMatch "^[0-9]+$" $value)) (gt (len $digits) 10) (gt ($digits | default "0" | int64) 4294967295) }}
{{- fail (printf "operator.extraArgs: --%s=%s is not a whole number from 0 to 4294967295" $name $value) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
