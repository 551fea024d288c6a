package sip

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"go.uber.org/zap/zapcore"
)

// Trunk is a PBX reached through one transport.
type Trunk struct {
	Name       string
	Address    string   // host:port of the PBX (or outbound proxy)
	Transport  string   // "udp" (default), "tcp", "tls"
	Username   string   // digest auth user; empty = no auth
	Password   string   // digest password (never logged)
	FromDomain string   // domain in From; default: the host of Address
	Codecs     []string // preference list among PCMU, PCMA, G722, opus; default ["PCMU","PCMA"]
	// AllowFrom are more sources (IPs or CIDR prefixes) whose requests are
	// taken as the trunk's: the other nodes of a PBX cluster. The address's
	// own host (resolved) always is.
	AllowFrom []string
}

// DefaultTrunkCodecs is the codec list used when a trunk names none.
var DefaultTrunkCodecs = []string{"PCMU", "PCMA"}

// Validate checks the trunk and names the first bad field.
func (t *Trunk) Validate() error {
	if t == nil {
		return errors.New("trunk: nil")
	}
	if t.Address == "" {
		return errors.New("trunk address: empty")
	}
	host, port, err := net.SplitHostPort(t.Address)
	if err != nil {
		return fmt.Errorf("trunk address %q: %w", t.Address, err)
	}
	if host == "" || strings.ContainsAny(host, " \t\r\n;<>\"") {
		return fmt.Errorf("trunk address %q: bad host", t.Address)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("trunk address %q: bad port", t.Address)
	}
	if _, err := normTransport(t.Transport); err != nil {
		return fmt.Errorf("trunk transport: %w", err)
	}
	if t.Password != "" && t.Username == "" {
		return errors.New("trunk username: empty while a password is set")
	}
	if strings.ContainsAny(t.Username, "\"\\\r\n\x00") {
		return fmt.Errorf("trunk username %q: holds a quote, backslash or line break", t.Username)
	}
	if t.FromDomain != "" && strings.ContainsAny(t.FromDomain, " \t\r\n;<>\"@:") {
		return fmt.Errorf("trunk from_domain %q: not a host name", t.FromDomain)
	}
	for i, s := range t.AllowFrom {
		if _, err := ParseAllowFrom(s); err != nil {
			return fmt.Errorf("trunk allow_from[%d]: %w", i, err)
		}
	}
	seen := map[string]bool{}
	for i, c := range t.Codecs {
		k, ok := LookupCodec(c)
		if !ok {
			return fmt.Errorf("trunk codecs[%d] %q: unknown (want PCMU, PCMA, G722 or opus)", i, c)
		}
		if seen[k.Name] {
			return fmt.Errorf("trunk codecs[%d] %q: listed twice", i, c)
		}
		seen[k.Name] = true
	}
	return nil
}

// String describes the trunk without its password.
func (t *Trunk) String() string {
	if t == nil {
		return "<nil trunk>"
	}
	return fmt.Sprintf("trunk %q %s/%s user=%q", t.Name, t.Address, t.transport(), t.Username)
}

// MarshalLogObject lets zap log a trunk; the password is never written.
func (t *Trunk) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("name", t.Name)
	enc.AddString("address", t.Address)
	enc.AddString("transport", t.transport())
	enc.AddString("username", t.Username)
	enc.AddBool("auth", t.Password != "")
	return nil
}

// hasCredentials says whether the trunk can answer a digest challenge.
func (t *Trunk) hasCredentials() bool { return t.Username != "" }

func (t *Trunk) transport() string {
	tr, err := normTransport(t.Transport)
	if err != nil {
		return "udp"
	}
	return tr
}

func (t *Trunk) fromDomain() string {
	if t.FromDomain != "" {
		return t.FromDomain
	}
	host, _, err := net.SplitHostPort(t.Address)
	if err != nil {
		return t.Address
	}
	return host
}

// codecs resolves the trunk's preference list to codecs (default PCMU, PCMA).
func (t *Trunk) codecs() []Codec {
	names := t.Codecs
	if len(names) == 0 {
		names = DefaultTrunkCodecs
	}
	out := make([]Codec, 0, len(names))
	for _, n := range names {
		if c, ok := LookupCodec(n); ok {
			out = append(out, c)
		}
	}
	return out
}

// codecsNamed resolves a codec list given by name, refusing an unknown name
// or one listed twice.
func codecsNamed(names []string) ([]Codec, error) {
	out := make([]Codec, 0, len(names))
	seen := map[string]bool{}
	for i, n := range names {
		c, ok := LookupCodec(n)
		switch {
		case !ok:
			return nil, fmt.Errorf("codecs[%d] %q: unknown (want PCMU, PCMA, G722 or opus)", i, n)
		case seen[c.Name]:
			return nil, fmt.Errorf("codecs[%d] %q: listed twice", i, n)
		}
		seen[c.Name] = true
		out = append(out, c)
	}
	return out, nil
}

// normTransport maps "", "udp", "tcp", "tls" (any case) to lower case.
func normTransport(s string) (string, error) {
	switch strings.ToLower(s) {
	case "", "udp":
		return "udp", nil
	case "tcp":
		return "tcp", nil
	case "tls":
		return "tls", nil
	}
	return "", fmt.Errorf("%q is not udp, tcp or tls", s)
}

// isToken reports whether s is a non-empty RFC 3261 §25.1 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
