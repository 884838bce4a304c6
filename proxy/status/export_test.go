package status

import (
	"encoding/json"
	"net/http"
)

// DashSample is a point of the dashboard's history, for package status_test.
type DashSample = dashSample

// DashboardForTest serves the dashboard of a fixed status document and
// history: the page, its assets and /_pkgswarm/status, for a browser test.
func DashboardForTest(st Status, hist []DashSample) http.Handler {
	d := &dashboard{tmpl: dashboardTemplate, ring: hist}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		d.tmpl.Execute(w, buildDashView(st, d.history()))
	})
	mux.Handle("GET "+dashboardUIPrefix, d)
	mux.HandleFunc("GET /_pkgswarm/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	return mux
}
