//go:build tools

// Package tools pins the promtool command this module builds: the tests
// check the chart's PrometheusRule and the dashboard's queries with it.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
