// Command testbed runs a real Kubernetes control plane on the loopback
// interface: an embedded etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, secured with a generated CA, service-account keys and RBAC.
// It runs no kubelet: nodes are simulated by a client of the API server.
//
//	testbed up --dir DIR --kubeconfig PATH   start everything, write an admin kubeconfig
//	testbed kube-apiserver|kube-controller-manager|kube-scheduler ARGS...
//	                                         run one component (used by "up")
//
// "up" also serves a control endpoint on the loopback interface (its URL is in
// the ready line) for what tests do to a cluster's control plane:
//
//	POST /compact                  compact etcd to its current revision
//	POST /restart/kube-apiserver   stop kube-apiserver and start it again on
//	                               the same port and etcd, once it is ready
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

const (
	serviceRange = "10.96.0.0/16"
	serviceIP    = "10.96.0.1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testbed up|kube-apiserver|kube-controller-manager|kube-scheduler ...")
		os.Exit(2)
	}
	cmd := os.Args[1]
	// The components parse os.Args[1:] as their own flags.
	os.Args = append([]string{os.Args[0]}, os.Args[2:]...)
	switch cmd {
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "up":
		if err := up(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "testbed:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "testbed: unknown command", cmd)
		os.Exit(2)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "testbed"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	client, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(clientPort))
	peer, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(peerPort))
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd did not become ready")
	}
	return e, client.String(), nil
}

type component struct {
	name string
	args []string
	cmd  *exec.Cmd
	done chan struct{}

	mu sync.Mutex
	// Which start of the component runs now, and whether it is being stopped on purpose to be started
	// again: the exit of a process that is not the current one, or of one being restarted, is no failure.
	generation int
	restarting bool
}

func (c *component) start(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// Appended to, so that a restarted component's log follows the one before.
	log, err := os.OpenFile(filepath.Join(dir, c.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	c.cmd = exec.Command(self, append([]string{c.name}, c.args...)...)
	c.cmd.Stdout, c.cmd.Stderr = log, log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := c.cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	cmd := c.cmd
	c.mu.Lock()
	c.done = done
	c.generation++
	c.mu.Unlock()
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	return nil
}

// watch reports on exited the name of the component when its current process
// ends, unless it was stopped to be restarted.
func (c *component) watch(exited chan<- string) {
	c.mu.Lock()
	done, generation := c.done, c.generation
	c.mu.Unlock()
	go func() {
		<-done
		c.mu.Lock()
		failed := c.generation == generation && !c.restarting
		c.mu.Unlock()
		if failed {
			exited <- c.name
		}
	}()
}

func (c *component) setRestarting(restarting bool) {
	c.mu.Lock()
	c.restarting = restarting
	c.mu.Unlock()
}

func (c *component) stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

func waitReady(ctx context.Context, p pki, server string) error {
	caPEM, err := os.ReadFile(p.path("ca.crt"))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	for {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API server at %s not ready: %v", server, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// controlPlane is what the control endpoint acts on: the embedded etcd and
// kube-apiserver, one request at a time.
type controlPlane struct {
	mu        sync.Mutex
	etcd      *embed.Etcd
	apiserver *component
	dir       string
	pki       pki
	server    string
	exited    chan<- string
	timeout   time.Duration
}

// compact compacts etcd to its current revision: every older revision is
// gone, so continue tokens and watches from before it expire (410 Gone).
func (cp *controlPlane) compact(ctx context.Context) (int64, error) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	revision := cp.etcd.Server.KV().Rev()
	_, err := cp.etcd.Server.Compact(ctx, &pb.CompactionRequest{Revision: revision, Physical: true})
	return revision, err
}

// restartAPIServer stops kube-apiserver (SIGTERM, as a rolling restart of a
// control plane does) and starts it again with the same flags, port and etcd;
// it returns once /readyz answers again.
func (cp *controlPlane) restartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	c := cp.apiserver
	c.setRestarting(true)
	c.stop()
	err := c.start(cp.dir)
	c.setRestarting(false)
	if err != nil {
		return err
	}
	c.watch(cp.exited)
	ctx, cancel := context.WithTimeout(ctx, cp.timeout)
	defer cancel()
	return waitReady(ctx, cp.pki, cp.server)
}

// serveControl serves the control endpoint on a free loopback port; it
// returns its URL.
func (cp *controlPlane) serveControl() (string, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /compact", func(w http.ResponseWriter, r *http.Request) {
		revision, err := cp.compact(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"revision": revision})
	})
	mux.HandleFunc("POST /restart/kube-apiserver", func(w http.ResponseWriter, r *http.Request) {
		if err := cp.restartAPIServer(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"restarted":"kube-apiserver"}` + "\n"))
	})
	go func() { _ = http.Serve(listener, mux) }()
	return "http://" + listener.Addr().String(), nil
}

// auditPolicy records what service accounts outside kube-system did (no
// bodies): enough to tell which RBAC verbs a workload used.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
`

func up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	dir := fs.String("dir", "", "state folder (certificates, etcd data, logs); a temporary one if empty")
	kubeconfig := fs.String("kubeconfig", "", "where to write the admin kubeconfig (default DIR/admin.kubeconfig)")
	port := fs.Int("port", 0, "API server port on 127.0.0.1 (0 picks a free one)")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for /readyz")
	audit := fs.Bool("audit", true, "write an audit log of every request (metadata only) to DIR/audit.log")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "testbed-")
		if err != nil {
			return err
		}
		*dir = d
	}
	if *kubeconfig == "" {
		*kubeconfig = filepath.Join(*dir, "admin.kubeconfig")
	}
	p := pki{dir: filepath.Join(*dir, "pki")}
	if err := p.generate(); err != nil {
		return err
	}
	if *port == 0 {
		var err error
		if *port, err = freePort(); err != nil {
			return err
		}
	}
	server := "https://127.0.0.1:" + strconv.Itoa(*port)
	for _, c := range []string{"controller-manager", "scheduler"} {
		if err := p.kubeconfig(filepath.Join(*dir, c+".kubeconfig"), c, server); err != nil {
			return err
		}
	}
	if err := p.kubeconfig(*kubeconfig, "admin", server); err != nil {
		return err
	}

	etcd, etcdURL, err := startEtcd(*dir)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	apiserverArgs := []string{}
	if *audit {
		policy := filepath.Join(*dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return err
		}
		apiserverArgs = append(apiserverArgs,
			"--audit-policy-file="+policy,
			"--audit-log-path="+filepath.Join(*dir, "audit.log"),
			"--audit-log-format=json",
			"--audit-log-mode=blocking",
		)
	}
	components := []*component{
		{name: "kube-apiserver", args: append(apiserverArgs,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port="+strconv.Itoa(*port),
			"--etcd-servers="+etcdURL,
			"--tls-cert-file="+p.path("apiserver.crt"),
			"--tls-private-key-file="+p.path("apiserver.key"),
			"--client-ca-file="+p.path("ca.crt"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file="+p.path("sa.pub"),
			"--service-account-signing-key-file="+p.path("sa.key"),
			"--service-cluster-ip-range="+serviceRange,
			"--authorization-mode=Node,RBAC",
			"--allow-privileged=true",
			"--endpoint-reconciler-type=none",
			"--v=1",
		)},
		{name: "kube-controller-manager", args: []string{
			"--kubeconfig=" + filepath.Join(*dir, "controller-manager.kubeconfig"),
			"--authentication-kubeconfig=" + filepath.Join(*dir, "controller-manager.kubeconfig"),
			"--authorization-kubeconfig=" + filepath.Join(*dir, "controller-manager.kubeconfig"),
			"--bind-address=127.0.0.1",
			"--secure-port=0",
			"--leader-elect=false",
			"--use-service-account-credentials=true",
			"--service-account-private-key-file=" + p.path("sa.key"),
			"--root-ca-file=" + p.path("ca.crt"),
			"--cluster-signing-cert-file=" + p.path("ca.crt"),
			"--cluster-signing-key-file=" + p.path("ca.key"),
			"--service-cluster-ip-range=" + serviceRange,
			"--v=1",
		}},
		{name: "kube-scheduler", args: []string{
			"--kubeconfig=" + filepath.Join(*dir, "scheduler.kubeconfig"),
			"--authentication-kubeconfig=" + filepath.Join(*dir, "scheduler.kubeconfig"),
			"--authorization-kubeconfig=" + filepath.Join(*dir, "scheduler.kubeconfig"),
			"--bind-address=127.0.0.1",
			"--secure-port=0",
			"--leader-elect=false",
			"--v=1",
		}},
	}
	defer func() {
		for i := len(components) - 1; i >= 0; i-- {
			components[i].stop()
		}
	}()
	if err := components[0].start(*dir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := waitReady(ctx, p, server); err != nil {
		return fmt.Errorf("%w (see %s)", err, filepath.Join(*dir, "kube-apiserver.log"))
	}
	for _, c := range components[1:] {
		if err := c.start(*dir); err != nil {
			return err
		}
	}
	exited := make(chan string, len(components))
	for _, c := range components {
		c.watch(exited)
	}
	control := &controlPlane{
		etcd: etcd, apiserver: components[0], dir: *dir, pki: p, server: server, exited: exited, timeout: *timeout,
	}
	controlURL, err := control.serveControl()
	if err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	fmt.Printf("testbed ready: server=%s kubeconfig=%s dir=%s pid=%d control=%s\n",
		server, *kubeconfig, *dir, os.Getpid(), controlURL)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		return nil
	case name := <-exited:
		return fmt.Errorf("%s exited (see %s)", name, filepath.Join(*dir, name+".log"))
	}
}
