package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// Options sends an out-of-dialog OPTIONS request to the trunk (a keepalive
// ping, RFC 3261 §11) and returns the status code of its final response.
// Any final response, 401/403/404 included, shows the PBX is there; an
// error means none came within ctx (or Timer F). No credentials are sent.
func (u *UA) Options(ctx context.Context, t *Trunk) (int, error) {
	if t == nil {
		return 0, errors.New("sip: options: no trunk")
	}
	if err := t.Validate(); err != nil {
		return 0, fmt.Errorf("sip: options: %w", err)
	}
	u.mu.Lock()
	st, state := u.st, u.state
	u.mu.Unlock()
	if state != 1 {
		return 0, errors.New("sip: options: UA not started or closed")
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
		return 0, fmt.Errorf("sip: options %s: %w", t.Address, err)
	}
	return res.StatusCode, nil
}
