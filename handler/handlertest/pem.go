package handlertest

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
)

// PrivateKeyPEM returns the private key as a PKCS#8 "PRIVATE KEY" PEM
// block, the format jwtbearer keygen and openssl genpkey write.
func (k *Key) PrivateKeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	must(err)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// RSAPrivateKeyPEM returns an RSA private key as a PKCS#1
// "RSA PRIVATE KEY" PEM block, like the id_rsa of the bshaffer
// walkthrough (openssl genrsa). It panics for other key types.
func (k *Key) RSAPrivateKeyPEM() []byte {
	rk, ok := k.Private.(*rsa.PrivateKey)
	if !ok {
		panic("handlertest: RSAPrivateKeyPEM needs an RSA key")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
}

// PublicKeyPEM returns the public key as an SPKI "PUBLIC KEY" PEM block,
// like the id_rsa.pub of the bshaffer walkthrough (openssl rsa -pubout).
func (k *Key) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.Private.Public())
	must(err)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// PublicJWKJSON returns the public JWK (with its thumbprint kid) as JSON.
func (k *Key) PublicJWKJSON() []byte {
	b, err := json.Marshal(k.Public)
	must(err)
	return b
}
