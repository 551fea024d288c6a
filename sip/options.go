package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// OptionsAuth says how a digest challenge to an OPTIONS ping went.
type OptionsAuth string

const (
	// OptionsNoChallenge: the first final response was no 401/407.
	OptionsNoChallenge OptionsAuth = ""
	// OptionsAuthAccepted: challenged, and the retry with the trunk's
	// credentials was not challenged again; Code is the retry's.
	OptionsAuthAccepted OptionsAuth = "accepted"
	// OptionsAuthNoCredentials: challenged, and the trunk has no username;
	// Code is the 401/407.
	OptionsAuthNoCredentials OptionsAuth = "no_credentials"
	// OptionsAuthRefused: the retry with credentials was challenged again,
	// so the trunk refuses them (wrong username or password); Code is the
	// second 401/407.
	OptionsAuthRefused OptionsAuth = "refused"
	// OptionsAuthUnanswerable: the challenge could not be answered (no
	// WWW-Authenticate or Proxy-Authenticate, or a digest this UA cannot
	// compute); Code is the 401/407.
	OptionsAuthUnanswerable OptionsAuth = "unanswerable"
)

// OptionsResult is the outcome of an answered OPTIONS ping.
type OptionsResult struct {
	Code int         // status of the final response (of the retry, if one was sent)
	Auth OptionsAuth // how a 401/407 went
	// Detail says why a challenge was unanswerable (OptionsAuthUnanswerable).
	Detail string
}

// Options sends an out-of-dialog OPTIONS request to the trunk (a keepalive
// ping, RFC 3261 §11) and returns the final response's status. Any final
// response, 401/403/404 included, shows the PBX is there; an error means
// none came within ctx (or Timer F). A 401/407 is answered once with the
// trunk's digest credentials, if it has some (same Call-ID and From tag,
// next CSeq, RFC 3261 §22.2), and Code is then the retry's; Auth says
// whether the credentials were accepted, refused (challenged again) or
// missing.
func (u *UA) Options(ctx context.Context, t *Trunk) (OptionsResult, error) {
	if t == nil {
		return OptionsResult{}, errors.New("sip: options: no trunk")
	}
	if err := t.Validate(); err != nil {
		return OptionsResult{}, fmt.Errorf("sip: options: %w", err)
	}
	u.mu.Lock()
	st, state := u.st, u.state
	u.mu.Unlock()
	if state != 1 {
		return OptionsResult{}, errors.New("sip: options: UA not started or closed")
	}
	host, portStr, _ := net.SplitHostPort(t.Address)
	port, _ := strconv.Atoi(portStr)
	recipient := sip.Uri{Scheme: "sip", Host: host, Port: port}

	req := sip.NewRequest(sip.OPTIONS, recipient)
	from := &sip.FromHeader{
		Address: sip.Uri{Scheme: "sip", User: "wagateway", Host: t.fromDomain()},
		Params:  sip.NewParams(),
	}
	from.Params.Add("tag", randHex(8))
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: host, Port: port}}
	cid := sip.CallIDHeader(randHex(16))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(&mf)
	req.AppendHeader(st.contact.Clone())
	req.AppendHeader(sip.NewHeader("User-Agent", u.cfg.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowHeader))
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	req.SetBody(nil)
	req.SetTransport(sipTransport(t.transport()))
	req.SetDestination(t.Address)

	res, err := doRequest(ctx, st, req)
	if err != nil {
		return OptionsResult{}, fmt.Errorf("sip: options %s: %w", t.Address, err)
	}
	if !isChallenge(res) {
		return OptionsResult{Code: res.StatusCode}, nil
	}
	if !t.hasCredentials() {
		return OptionsResult{Code: res.StatusCode, Auth: OptionsAuthNoCredentials}, nil
	}
	tx, err := answerChallenge(ctx, st, req, res, t)
	if err != nil {
		// The credentials header is added before sending: with it, the
		// retry could not be sent; without it, the challenge was unusable.
		if ctx.Err() != nil || req.GetHeader("Authorization") != nil || req.GetHeader("Proxy-Authorization") != nil {
			return OptionsResult{}, fmt.Errorf("sip: options %s: digest auth: %w", t.Address, err)
		}
		return OptionsResult{Code: res.StatusCode, Auth: OptionsAuthUnanswerable, Detail: err.Error()}, nil
	}
	res, err = awaitFinal(ctx, tx, req)
	if err != nil {
		return OptionsResult{}, fmt.Errorf("sip: options %s: after digest auth: %w", t.Address, err)
	}
	if isChallenge(res) {
		return OptionsResult{Code: res.StatusCode, Auth: OptionsAuthRefused}, nil
	}
	return OptionsResult{Code: res.StatusCode, Auth: OptionsAuthAccepted}, nil
}
