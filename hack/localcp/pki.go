package localcp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the paths of the certificates and keys of one cluster. Everything
// is generated with Go's crypto packages; nothing shells out.
type pki struct {
	CACert, CAKey                 string // cluster CA: client CA, serving certs, CSR signing
	ServingCert, ServingKey       string // 127.0.0.1 serving cert, shared by apiserver, controller-manager, scheduler
	FrontProxyCACert              string // front-proxy (requestheader) CA
	FrontProxyCert, FrontProxyKey string // apiserver's client cert towards aggregated apiservers
	ServiceAccountKey             string // service-account token signing key (private)
	ServiceAccountPub             string // ... and its public half

	caPEM                        []byte
	caCert, frontProxyCA         *x509.Certificate
	caSigner, frontProxyCASigner crypto.Signer
	validFrom, validUntil        time.Time
	serialLimit                  *big.Int
	servingIPs                   []net.IP
	servingDNSNames              []string
}

// serviceIP is the first address of --service-cluster-ip-range: the ClusterIP of
// the "kubernetes" Service. It is only a name in a certificate here.
const (
	serviceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1"
)

func newPKI(dir string) (*pki, error) {
	now := time.Now()
	p := &pki{
		CACert:            filepath.Join(dir, "ca.crt"),
		CAKey:             filepath.Join(dir, "ca.key"),
		ServingCert:       filepath.Join(dir, "serving.crt"),
		ServingKey:        filepath.Join(dir, "serving.key"),
		FrontProxyCACert:  filepath.Join(dir, "front-proxy-ca.crt"),
		FrontProxyCert:    filepath.Join(dir, "front-proxy-client.crt"),
		FrontProxyKey:     filepath.Join(dir, "front-proxy-client.key"),
		ServiceAccountKey: filepath.Join(dir, "sa.key"),
		ServiceAccountPub: filepath.Join(dir, "sa.pub"),
		validFrom:         now.Add(-time.Hour),
		validUntil:        now.Add(10 * 365 * 24 * time.Hour),
		serialLimit:       new(big.Int).Lsh(big.NewInt(1), 127),
		servingIPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)},
		servingDNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}

	var err error
	if p.caCert, p.caSigner, err = p.newCA("localcp-ca", p.CACert, p.CAKey); err != nil {
		return nil, err
	}
	if p.caPEM, err = os.ReadFile(p.CACert); err != nil {
		return nil, err
	}
	if p.frontProxyCA, p.frontProxyCASigner, err = p.newCA("localcp-front-proxy-ca", p.FrontProxyCACert, filepath.Join(dir, "front-proxy-ca.key")); err != nil {
		return nil, err
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localcp-serving"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: p.servingIPs,
		DNSNames:    p.servingDNSNames,
	}
	if err := p.issue(serving, p.caCert, p.caSigner, p.ServingCert, p.ServingKey); err != nil {
		return nil, err
	}
	frontProxyClient := &x509.Certificate{
		Subject:     pkix.Name{CommonName: frontProxyClientName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.issue(frontProxyClient, p.frontProxyCA, p.frontProxyCASigner, p.FrontProxyCert, p.FrontProxyKey); err != nil {
		return nil, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(p.ServiceAccountKey, saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(p.ServiceAccountPub, "PUBLIC KEY", pub, 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// frontProxyClientName is the CN of the front-proxy client certificate and the
// only name --requestheader-allowed-names accepts.
const frontProxyClientName = "front-proxy-client"

func (p *pki) newCA(cn, certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, p.serialLimit)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             p.validFrom,
		NotAfter:              p.validUntil,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CA %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func (p *pki) issue(tmpl, parent *x509.Certificate, signer crypto.Signer, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, p.serialLimit); err != nil {
		return err
	}
	tmpl.NotBefore, tmpl.NotAfter = p.validFrom, p.validUntil
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return fmt.Errorf("issuing %s: %w", tmpl.Subject.CommonName, err)
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode)
}

// newToken returns a random bearer token.
func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
