// Command whoami is the lab's web server: on every address of its pod, port
// $PORT (8080 by default), it answers each HTTP request with one line,
// "$POD_NAME <the client address it saw>", so a test can tell which pod
// answered and whether the client's source address reached it unchanged.
//
// "whoami get URL" is the client: it prints the body of URL's answer, so
// that one pod can ask another (`ctr tasks exec` into its container).
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "get" {
		get(os.Args[2])
		return
	}
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

func get(url string) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "whoami get:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, "whoami get:", err)
		os.Exit(1)
	}
}
