// Command etcd runs a single-member etcd server through the
// go.etcd.io/etcd/server/v3/embed package. It is meant for tests only:
// it listens on loopback, prints one "ready" line on stdout and stops
// cleanly on SIGINT/SIGTERM. A client URL with port 0 gets a free port; the
// ready line ("etcd ready: client-urls=http://127.0.0.1:PORT") names it.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

func parseURLs(name, s string) []url.URL {
	var out []url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil {
			fmt.Fprintf(os.Stderr, "etcd: invalid --%s %q: %v\n", name, part, err)
			os.Exit(2)
		}
		out = append(out, *u)
	}
	return out
}

func main() {
	var (
		name        = flag.String("name", "nasop-etcd", "member name")
		dataDir     = flag.String("data-dir", "", "data directory (required)")
		listenCl    = flag.String("listen-client-urls", "http://127.0.0.1:2379", "comma-separated client URLs to listen on")
		advertiseCl = flag.String("advertise-client-urls", "", "comma-separated client URLs to advertise (default: --listen-client-urls)")
		listenPeer  = flag.String("listen-peer-urls", "http://127.0.0.1:2380", "comma-separated peer URLs to listen on")
		advPeer     = flag.String("initial-advertise-peer-urls", "", "peer URLs to advertise (default: --listen-peer-urls)")
		logLevel    = flag.String("log-level", "warn", "log level: debug, info, warn, error")
		noFsync     = flag.Bool("unsafe-no-fsync", false, "disable fsync (faster, unsafe; fine for throw-away test data)")
		quota       = flag.Int64("quota-backend-bytes", 0, "backend size quota in bytes (0: etcd default)")
		startWait   = flag.Duration("start-timeout", 60*time.Second, "how long to wait for the server to become ready")
	)
	flag.Parse()
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "etcd: --data-dir is required")
		os.Exit(2)
	}
	if *advertiseCl == "" {
		*advertiseCl = *listenCl
	}
	if *advPeer == "" {
		*advPeer = *listenPeer
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	cfg.ListenClientUrls = parseURLs("listen-client-urls", *listenCl)
	cfg.AdvertiseClientUrls = parseURLs("advertise-client-urls", *advertiseCl)
	cfg.ListenPeerUrls = parseURLs("listen-peer-urls", *listenPeer)
	cfg.AdvertisePeerUrls = parseURLs("initial-advertise-peer-urls", *advPeer)
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = *logLevel
	cfg.UnsafeNoFsync = *noFsync
	// etcdmain sets this from its flags; embed.NewConfig leaves it at 0,
	// which makes etcd log every single request at warn level.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	if *quota > 0 {
		cfg.QuotaBackendBytes = *quota
	}

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd: start failed: %v\n", err)
		os.Exit(1)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	select {
	case <-e.Server.ReadyNotify():
		var addrs []string
		for _, l := range e.Clients {
			addrs = append(addrs, "http://"+l.Addr().String())
		}
		fmt.Printf("etcd ready: client-urls=%s\n", strings.Join(addrs, ","))
	case <-time.After(*startWait):
		e.Server.Stop()
		e.Close()
		fmt.Fprintln(os.Stderr, "etcd: server took too long to become ready")
		os.Exit(1)
	case s := <-sigs:
		e.Close()
		fmt.Fprintf(os.Stderr, "etcd: got %v before ready, stopped\n", s)
		os.Exit(1)
	}

	select {
	case s := <-sigs:
		fmt.Fprintf(os.Stderr, "etcd: got %v, shutting down\n", s)
		e.Close()
		fmt.Fprintln(os.Stderr, "etcd: stopped")
	case err := <-e.Err():
		e.Close()
		fmt.Fprintf(os.Stderr, "etcd: server error: %v\n", err)
		os.Exit(1)
	}
}
