// Command pause is the pod sandbox ("pause") container of the local cluster:
// it holds the pod's namespaces open by blocking forever, reaps any child that
// gets re-parented to it (it is PID 1 of the pod's PID namespace when the pod
// shares one), and exits 0 on SIGTERM or SIGINT. Built static (CGO_ENABLED=0)
// by deploy/image/build.sh into localhost/pgjobs-pause:1, FROM scratch.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking: several SIGCHLDs may
// arrive as one.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
