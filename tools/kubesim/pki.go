package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

type pki struct {
	dir                       string
	caCert, caKey             string // file paths
	servingCert, servingKey   string
	adminCertPEM, adminKeyPEM []byte
	caCertPEM                 []byte
	saKey, saPub              string
	caX509                    *x509.Certificate // kept in memory to issue more certs (fault proxy)
	caPriv                    *ecdsa.PrivateKey
}

func writePEM(path, typ string, der []byte) ([]byte, error) {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	return b, os.WriteFile(path, b, 0o600)
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	return k, der, err
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// genPKI creates a CA, an apiserver serving cert, an admin client cert
// (O=system:masters) and a service-account key pair. All keys are P-256 in
// PKCS#8 form, which rustls accepts.
func genPKI(dir string) (*pki, error) {
	d := filepath.Join(dir, "pki")
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	p := &pki{dir: d}
	now := time.Now().Add(-time.Hour)
	caKey, caKeyDER, err := newKey()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "kubesim-ca"},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p.caX509, p.caPriv = caCert, caKey
	p.caCert, p.caKey = filepath.Join(d, "ca.crt"), filepath.Join(d, "ca.key")
	if p.caCertPEM, err = writePEM(p.caCert, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if _, err = writePEM(p.caKey, "PRIVATE KEY", caKeyDER); err != nil {
		return nil, err
	}

	issue := func(tmpl *x509.Certificate) ([]byte, []byte, error) {
		k, kDER, err := newKey()
		if err != nil {
			return nil, nil, err
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kDER}), nil
	}
	sc, sk, err := issue(&x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
	if err != nil {
		return nil, err
	}
	p.servingCert, p.servingKey = filepath.Join(d, "apiserver.crt"), filepath.Join(d, "apiserver.key")
	if err := os.WriteFile(p.servingCert, sc, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.servingKey, sk, 0o600); err != nil {
		return nil, err
	}
	p.adminCertPEM, p.adminKeyPEM, err = issue(&x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "kubesim-admin", Organization: []string{"system:masters"}},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	saK, _, err := newKey()
	if err != nil {
		return nil, err
	}
	saDER, err := x509.MarshalECPrivateKey(saK)
	if err != nil {
		return nil, err
	}
	p.saKey = filepath.Join(d, "sa.key")
	if _, err := writePEM(p.saKey, "EC PRIVATE KEY", saDER); err != nil {
		return nil, err
	}
	return p, nil
}

func writeKubeconfig(path, server string, p *pki) error {
	return writeKubeconfigNamed(path, server, p, "kubesim")
}

// writeKubeconfigNamed writes a kubeconfig whose cluster and context are called name.
func writeKubeconfigNamed(path, server string, p *pki, name string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.caCertPEM}
	cfg.AuthInfos["kubesim-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "kubesim-admin", Namespace: "default"}
	cfg.CurrentContext = name
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
