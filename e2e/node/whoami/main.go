// Command whoami is the lab's web server: on every address of its pod, port
// $PORT (8080 by default), it answers each HTTP request with one line,
// "$POD_NAME <the client address it saw>", so a test can tell which pod
// answered and whether the client's source address reached it unchanged.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		fmt.Fprintf(w, "%s %s\n", name, host)
	})
	// "tcp" on an empty host listens on both families.
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, "whoami:", err)
		os.Exit(1)
	}
}
