package bus_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tributary/tributary/internal/natstest"
	"github.com/tributary/tributary/pkg/bus"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func connectAndCheck(t *testing.T, opts bus.ConnectOptions) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts.ConnectTimeout = 3 * time.Second
	c, err := bus.Connect(ctx, opts)
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

func TestConnectWithToken(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) { o.Authorization = "t0ken-s3cret" }})
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := connectAndCheck(t, bus.ConnectOptions{URL: srv.URL(), Token: "t0ken-s3cret", Logger: log}); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	err := connectAndCheck(t, bus.ConnectOptions{URL: srv.URL(), Token: "wrong-t0ken", Logger: log})
	if err == nil {
		t.Fatal("a wrong token was accepted")
	}
	if strings.Contains(err.Error(), "wrong-t0ken") || strings.Contains(logs.String(), "t0ken") {
		t.Fatalf("the token leaked into the error or the log:\n%v\n%s", err, logs.String())
	}
}

func TestConnectWithUserPassword(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) {
		o.Username, o.Password = "trib", "pa55-word"
	}})
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := connectAndCheck(t, bus.ConnectOptions{URL: srv.URL(), User: "trib", Password: "pa55-word", Logger: log}); err != nil {
		t.Fatalf("with user and password: %v", err)
	}
	if err := connectAndCheck(t, bus.ConnectOptions{URL: srv.URL(), User: "trib", Password: "nope", Logger: log}); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	// Credentials in the URL are redacted from logs and errors too.
	u := strings.Replace(srv.URL(), "nats://", "nats://trib:bad-pa55@", 1)
	err := connectAndCheck(t, bus.ConnectOptions{URL: u, Logger: log})
	if err == nil {
		t.Fatal("a wrong password in the URL was accepted")
	}
	if strings.Contains(err.Error(), "bad-pa55") || strings.Contains(logs.String(), "pa55") {
		t.Fatalf("the password leaked:\n%v\n%s", err, logs.String())
	}
}

// TLS with a private CA and a client certificate the server requires.
func TestConnectWithTLSAndClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.Raw)
	srvCert, srvKey := newLeaf(t, ca, caKey, "server", true)
	cliCert, cliKey := newLeaf(t, ca, caKey, "client", false)
	writePEM(t, filepath.Join(dir, "client.pem"), "CERTIFICATE", cliCert.Raw)
	writeKey(t, filepath.Join(dir, "client-key.pem"), cliKey)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) {
		o.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
			MinVersion:   tls.VersionTLS12,
		}
		o.TLS, o.TLSVerify = true, true
		o.TLSTimeout = 2
	}})
	url := strings.Replace(srv.URL(), "nats://", "tls://", 1)
	opts := bus.ConnectOptions{URL: url, TLS: bus.TLSOptions{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "client.pem"),
		KeyFile:  filepath.Join(dir, "client-key.pem"),
	}}
	if err := connectAndCheck(t, opts); err != nil {
		t.Fatalf("TLS with a client certificate: %v", err)
	}
	noCert := opts
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	if err := connectAndCheck(t, noCert); err == nil {
		t.Fatal("connected without the client certificate the server requires")
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tributary test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, server bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}
