// Command coredns is the cluster DNS of the local single-node cluster: CoreDNS
// (github.com/coredns/coredns, version pinned in go.mod) with only the plugins a
// cluster DNS needs, instead of the upstream binary's ~70 (cloud backends,
// dnstap, geoip, ...), so the build pulls in and compiles far less.
//
// How the subset works: each plugin package registers its directive with caddy
// in an init function, so a plugin is available exactly when it is imported
// below. dnsserver.Directives (CoreDNS's execution order for every known
// plugin) is cut down in main to the registered ones, keeping their order, so a
// Corefile that uses a plugin left out fails to parse with "Unknown directive"
// instead of failing later at setup. coremain provides the usual command line
// (-conf, -dns.port, -plugins, -version, -quiet, -pidfile).
//
// Built by build.sh next to this file.
package main

import (
	"fmt"
	"os"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins. Adding one: import it here and run build.sh.
	_ "github.com/coredns/coredns/plugin/bind"        // bind ADDR: listen on one address
	_ "github.com/coredns/coredns/plugin/cache"       // cache
	_ "github.com/coredns/coredns/plugin/errors"      // errors: log failed lookups
	_ "github.com/coredns/coredns/plugin/forward"     // forward . /etc/resolv.conf
	_ "github.com/coredns/coredns/plugin/health"      // health ADDR: liveness on /health
	_ "github.com/coredns/coredns/plugin/kubernetes"  // kubernetes cluster.local ...
	_ "github.com/coredns/coredns/plugin/loadbalance" // round-robin A/AAAA order
	_ "github.com/coredns/coredns/plugin/log"         // query log
	_ "github.com/coredns/coredns/plugin/loop"        // stop on a forwarding loop
	_ "github.com/coredns/coredns/plugin/metrics"     // prometheus ADDR: /metrics
	_ "github.com/coredns/coredns/plugin/ready"       // ready ADDR: readiness on /ready
	_ "github.com/coredns/coredns/plugin/reload"      // reload when the Corefile changes
	_ "github.com/coredns/coredns/plugin/whoami"      // whoami: answers with the client's address
)

const serverType = "dns"

func main() {
	var registered []string
	for _, d := range dnsserver.Directives {
		if _, err := caddy.DirectiveAction(serverType, d); err == nil {
			registered = append(registered, d)
		}
	}
	if err := dnsserver.SetDirectives(registered); err != nil {
		fmt.Fprintln(os.Stderr, "coredns:", err)
		os.Exit(1)
	}
	coremain.Run()
}
