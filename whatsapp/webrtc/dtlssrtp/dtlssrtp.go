// Package dtlssrtp is DTLS-SRTP (RFC 5764) over a UDP socket that ICE, DTLS
// and SRTP share (RFC 7983 demultiplexing): the ECDSA certificate a side
// presents, the packet pipe its DTLS handshake runs over (records are handed
// in by whoever reads the socket), the certificate check against the SDP's
// a=fingerprint (RFC 8122), and the SRTP contexts keyed from the handshake.
//
// The gateway's WhatsApp leg (DTLS client when it answers, either role when
// it offers) and the simulator's lite leg (DTLS server, Meta's side) both
// use it.
package dtlssrtp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/srtp/v3"
)

// ReplayWindow is the SRTP replay window on receive (RFC 3711 §3.3.2 asks
// for at least 64; a little more tolerates reordering under load).
const ReplayWindow = 256

// Certificate is a self-signed ECDSA P-256 certificate (Meta's media rules
// ask for ECDSA) and its SDP fingerprint.
type Certificate struct {
	TLS         tls.Certificate
	Fingerprint string // "sha-256 AB:CD:…", the value of a=fingerprint
}

// NewCertificate makes a certificate valid for 30 days from an hour ago.
func NewCertificate(commonName string) (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dtls certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("dtls certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("dtls certificate: %w", err)
	}
	sum := sha256.Sum256(der)
	return &Certificate{
		TLS:         tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		Fingerprint: "sha-256 " + colonHex(sum[:]),
	}, nil
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// ParseFingerprint reads the value of an a=fingerprint attribute ("sha-256
// AB:CD:…"). Only sha-256 is taken: it is what Meta and browsers send.
func ParseFingerprint(v string) ([]byte, error) {
	alg, hexfp, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(alg, "sha-256") {
		return nil, fmt.Errorf("fingerprint %q is not sha-256", v)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(hexfp), ":", ""))
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("fingerprint %q is not a sha-256 digest", hexfp)
	}
	return b, nil
}

// CheckFingerprint checks the peer's certificate chain (as DTLS hands it to
// VerifyPeerCertificate) against the SDP's sha-256 fingerprint: the only
// authentication a self-signed DTLS-SRTP certificate has (RFC 8122 §5).
func CheckFingerprint(raw [][]byte, want []byte) error {
	if len(raw) == 0 {
		return errors.New("the peer presented no certificate")
	}
	sum := sha256.Sum256(raw[0])
	if !bytes.Equal(sum[:], want) {
		return errors.New("the peer's certificate does not match the SDP fingerprint")
	}
	return nil
}

// Profiles are the SRTP protection profiles offered, best first.
var Profiles = []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80}

// Keys runs the handshake on dc, for at most timeout and until abort
// closes, and returns the SRTP contexts it keys (RFC 5764 §4.2): tx for
// what this side sends, rx (with replay protection) for what it receives.
func Keys(dc *dtls.Conn, isClient bool, timeout time.Duration, abort <-chan struct{}) (tx, rx *srtp.Context, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-abort:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := dc.HandshakeContext(ctx); err != nil {
		return nil, nil, fmt.Errorf("dtls handshake: %w", err)
	}
	prof, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, nil, errors.New("dtls: no SRTP protection profile negotiated")
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return nil, nil, errors.New("dtls: no connection state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(prof)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, isClient); err != nil {
		return nil, nil, fmt.Errorf("srtp keys: %w", err)
	}
	tx, err = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
	if err != nil {
		return nil, nil, fmt.Errorf("srtp: %w", err)
	}
	rx, err = srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile,
		srtp.SRTPReplayProtection(ReplayWindow), srtp.SRTCPReplayProtection(ReplayWindow))
	if err != nil {
		return nil, nil, fmt.Errorf("srtp: %w", err)
	}
	return tx, rx, nil
}
