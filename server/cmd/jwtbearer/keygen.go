package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	jose "github.com/go-jose/go-jose/v3"
)

// RSA key sizes keygen accepts. Below 2048 bits is too weak (RFC 7518
// §3.3 requires at least 2048 for RS256); above 8192 generation takes
// minutes for no practical gain.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// curves maps the -curve names, which are the JWK "crv" names, to curves.
var curves = map[string]elliptic.Curve{
	"P-256": elliptic.P256(),
	"P-384": elliptic.P384(),
	"P-521": elliptic.P521(),
}

// runKeygen creates a key pair in the PEM files the server and mint read:
// PREFIX holds the PKCS#8 private key and PREFIX.pub the SPKI public key,
// as with the id_rsa / id_rsa.pub pair of the bshaffer walkthrough. It
// prints the public JWK so the key can also be registered as JSON.
func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", "[-type rsa|ec] [-bits 2048] [-curve P-256|P-384|P-521] [-out PREFIX] [-force]", stderr)
	keyType := fs.String("type", "rsa", "key `type`: rsa or ec")
	bits := fs.Int("bits", minRSABits, "RSA key size in bits (2048 to 8192)")
	curve := fs.String("curve", "P-256", "EC `curve`: P-256, P-384 or P-521")
	out := fs.String("out", "", "write the private key to `PREFIX` and the public key to PREFIX.pub (default id_rsa or id_ec)")
	force := fs.Bool("force", false, "overwrite existing key files")
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	var key crypto.Signer
	var err error
	prefix := *out
	switch *keyType {
	case "rsa":
		if *bits < minRSABits || *bits > maxRSABits {
			return usageErrorf(false, "keygen: -bits must be between %d and %d, got %d", minRSABits, maxRSABits, *bits)
		}
		if prefix == "" {
			prefix = "id_rsa"
		}
		key, err = rsa.GenerateKey(rand.Reader, *bits)
	case "ec":
		c, ok := curves[*curve]
		if !ok {
			return usageErrorf(false, "keygen: unknown -curve %q (want P-256, P-384 or P-521)", *curve)
		}
		if prefix == "" {
			prefix = "id_ec"
		}
		key, err = ecdsa.GenerateKey(c, rand.Reader)
	default:
		return usageErrorf(false, "keygen: unknown -type %q (want rsa or ec)", *keyType)
	}
	if err != nil {
		return fmt.Errorf("keygen: generate key: %w", err)
	}

	jwk, err := publicJWK(key.Public())
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := writeKeyPair(prefix, key, *force); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	_, _ = fmt.Fprintf(stderr, "wrote %s (private key, keep it secret) and %s.pub\n", prefix, prefix)

	js, err := json.MarshalIndent(jwk, "", "  ")
	if err != nil {
		return fmt.Errorf("keygen: encode JWK: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\nkid: %s\n", js, jwk.KeyID)
	return err
}

// publicJWK describes pub as a signing JWK whose kid is its RFC 7638
// thumbprint, the same kid mint puts in its headers by default.
func publicJWK(pub crypto.PublicKey) (*jose.JSONWebKey, error) {
	algs, err := signingAlgs(pub)
	if err != nil {
		return nil, err
	}
	jwk := &jose.JSONWebKey{Key: pub, Algorithm: string(algs[0]), Use: "sig"}
	jwk.KeyID = thumbprint(jwk)
	return jwk, nil
}

// writeKeyPair writes the private key (PKCS#8, mode 0600) and the public
// key (SPKI, mode 0644) in PEM. Unless force is set it refuses to touch
// either file when one exists, so a working key is never lost by accident.
func writeKeyPair(prefix string, key crypto.Signer, force bool) error {
	privDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return fmt.Errorf("encode public key: %w", err)
	}
	privPath, pubPath := prefix, prefix+".pub"
	if !force {
		for _, p := range []string{privPath, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s already exists (use -force to overwrite)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := writePEM(privPath, "PRIVATE KEY", privDER, 0o600, force); err != nil {
		return err
	}
	if err := writePEM(pubPath, "PUBLIC KEY", pubDER, 0o644, force); err != nil {
		// A private key without its public half is of no use; don't leave it.
		_ = os.Remove(privPath)
		return err
	}
	return nil
}

// writePEM writes one PEM block to path with exactly the given mode. It
// sets the mode after opening because the umask narrows, and an existing
// file keeps, the mode given to OpenFile.
func writePEM(path, blockType string, der []byte, mode os.FileMode, overwrite bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if overwrite {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	if err := pem.Encode(f, &pem.Block{Type: blockType, Bytes: der}); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// thumbprint returns the RFC 7638 SHA-256 thumbprint of k, base64url
// without padding: the kid both the server and mint derive for a key that
// was registered without one, so the two always agree.
//
// It panics for key types go-jose cannot thumbprint; callers only pass
// keys that signingAlgs accepted, which go-jose always can.
func thumbprint(k *jose.JSONWebKey) string {
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		panic(fmt.Sprintf("thumbprint of %T: %v", k.Key, err))
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

// signingAlgs lists the JWS algorithms (RFC 7518 §3.1) that a key of this
// type can sign with, the usual default first. An EC key has exactly one,
// fixed by its curve.
func signingAlgs(pub crypto.PublicKey) ([]jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512}, nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().Name {
		case "P-256":
			return []jose.SignatureAlgorithm{jose.ES256}, nil
		case "P-384":
			return []jose.SignatureAlgorithm{jose.ES384}, nil
		case "P-521":
			return []jose.SignatureAlgorithm{jose.ES512}, nil
		}
		return nil, fmt.Errorf("unsupported EC curve %s (want P-256, P-384 or P-521)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return []jose.SignatureAlgorithm{jose.EdDSA}, nil
	}
	return nil, fmt.Errorf("unsupported key type %T (want RSA, EC or Ed25519)", pub)
}
