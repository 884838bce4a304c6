package testrepo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ServeTLS is Serve over HTTPS: URL is "https://127.0.0.1:PORT", with a
// fresh self-signed certificate for 127.0.0.1 and "localhost" that clients
// trust through CertPool or CertFile.
func ServeTLS(t testing.TB, dir string) *Origin {
	t.Helper()
	o, err := ServeDirTLS(dir, t.TempDir())
	if err != nil {
		t.Fatalf("testrepo: %v", err)
	}
	t.Cleanup(o.Stop)
	return o
}

// ServeDirTLS is ServeDir over HTTPS; the certificate's PEM is written to
// certDir/origin.crt (CertFile).
func ServeDirTLS(dir, certDir string) (*Origin, error) {
	cert, pemBytes, err := selfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("serve %s over TLS: %w", dir, err)
	}
	certFile := filepath.Join(certDir, "origin.crt")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return nil, fmt.Errorf("serve %s over TLS: %w", dir, err)
	}
	if err := os.WriteFile(certFile, pemBytes, 0o644); err != nil {
		return nil, fmt.Errorf("serve %s over TLS: %w", dir, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	return serveDir(dir, &tlsSetup{
		config: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		pool:   pool,
		file:   certFile,
	})
}

type tlsSetup struct {
	config *tls.Config
	pool   *x509.CertPool
	file   string
}

// CertPool returns the pool holding the TLS Origin's certificate, for a Go
// client's tls.Config.RootCAs; nil for a plain HTTP Origin.
func (o *Origin) CertPool() *x509.CertPool {
	if o.tls == nil {
		return nil
	}
	return o.tls.pool
}

// CertFile is the path of the TLS Origin's certificate (PEM), e.g. for
// apt's Acquire::https::CaInfo or curl --cacert; "" for a plain Origin.
func (o *Origin) CertFile() string {
	if o.tls == nil {
		return ""
	}
	return o.tls.file
}

// Client returns an http.Client that trusts the Origin (plain or TLS) and
// uses no proxy.
func (o *Origin) Client() *http.Client {
	tr := &http.Transport{Proxy: nil}
	if o.tls != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: o.tls.pool}
	}
	return &http.Client{Transport: tr}
}

func (o *Origin) listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil || o.tls == nil {
		return ln, err
	}
	return tls.NewListener(ln, o.tls.config), nil
}

// selfSignedCert makes an ECDSA P-256 certificate for 127.0.0.1, ::1 and
// localhost, valid from an hour ago for a year.
func selfSignedCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pkgswarm testrepo origin"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pemBytes, nil
}
