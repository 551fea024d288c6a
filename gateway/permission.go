package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/wagateway/wagateway/whatsapp"
)

// permissionAPI is the Graph API as the permission keeper uses it.
type permissionAPI interface {
	CallPermissions(ctx context.Context, phoneNumberID string, user whatsapp.UserRef) (*whatsapp.CallPermission, error)
	SendCallPermissionRequest(ctx context.Context, phoneNumberID string, user whatsapp.UserRef, bodyText string) (string, error)
	SendCallPermissionTemplate(ctx context.Context, phoneNumberID string, user whatsapp.UserRef, template, language string) (string, error)
}

const (
	// permissionTTL is how long Meta's answer about a user's permission is
	// reused: agents redial the same customer, and R5 allows only 5
	// requests a second per number. A reply webhook replaces it at once.
	permissionTTL = 30 * time.Second
	// maxCachedPermissions and maxReplyLog bound what is kept.
	maxCachedPermissions = 10000
	maxReplyLog          = 200
	// errOutsideWindow is Meta's "re-engagement message" error: more than
	// 24 h passed since the user's last message, so only a template may be
	// sent (Cloud API error codes, 131047).
	errOutsideWindow = 131047
)

// permKey is one user of one business number. user is the wa_id or BSUID.
type permKey struct{ pnid, user string }

type permEntry struct {
	perm *whatsapp.CallPermission
	at   time.Time
}

// permissionReply is a reply the gateway took, as the admin API lists it.
type permissionReply struct {
	PhoneNumberID string    `json:"phone_number_id"`
	User          string    `json:"user"`
	BSUID         string    `json:"bsuid,omitempty"`
	Response      string    `json:"response"` // accept, reject
	Permanent     bool      `json:"permanent,omitempty"`
	Expires       time.Time `json:"expires,omitzero"`
	Source        string    `json:"source,omitempty"` // user_action, automatic
	At            time.Time `json:"at"`
}

// permissions keeps what the gateway knows of users' call permissions:
// Meta's state (cached briefly), the replies that arrive (the messages
// webhook's call_permission_reply), and the calls waiting for one.
type permissions struct {
	api     permissionAPI
	metrics *metrics
	log     *zap.Logger
	now     func() time.Time

	mu      sync.Mutex
	cache   map[permKey]permEntry
	waiters map[permKey]map[chan whatsapp.PermissionReply]struct{}
	replies []permissionReply // the latest maxReplyLog, oldest first
}

func newPermissions(api permissionAPI, m *metrics, log *zap.Logger) *permissions {
	return &permissions{api: api, metrics: m, log: log, now: time.Now,
		cache: map[permKey]permEntry{}, waiters: map[permKey]map[chan whatsapp.PermissionReply]struct{}{}}
}

func userKey(pnid string, u waUser) permKey {
	if u.waID != "" {
		return permKey{pnid, u.waID}
	}
	return permKey{pnid, u.bsuid}
}

func (u waUser) ref() whatsapp.UserRef { return whatsapp.UserRef{WaID: u.waID, BSUID: u.bsuid} }

// state is the user's permission, from the cache while fresh, else Meta's.
func (p *permissions) state(ctx context.Context, pnid string, u waUser, fresh bool) (*whatsapp.CallPermission, error) {
	k := userKey(pnid, u)
	if !fresh {
		p.mu.Lock()
		e, ok := p.cache[k]
		p.mu.Unlock()
		if ok && p.now().Sub(e.at) < permissionTTL {
			return e.perm, nil
		}
	}
	perm, err := p.api.CallPermissions(ctx, pnid, u.ref())
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.cache) >= maxCachedPermissions {
		p.pruneLocked()
	}
	p.cache[k] = permEntry{perm: perm, at: p.now()}
	p.mu.Unlock()
	return perm, nil
}

// pruneLocked drops stale entries, and if that is not enough, all of them.
func (p *permissions) pruneLocked() {
	now := p.now()
	for k, e := range p.cache {
		if now.Sub(e.at) >= permissionTTL {
			delete(p.cache, k)
		}
	}
	if len(p.cache) >= maxCachedPermissions {
		clear(p.cache)
	}
}

// forget drops the cached state (a connect refused for permission says it
// is stale).
func (p *permissions) forget(pnid string, u waUser) {
	p.mu.Lock()
	delete(p.cache, userKey(pnid, u))
	p.mu.Unlock()
}

// request sends a call permission request: the free-form message when the
// route has one, the template when it has no message or the user is outside
// the 24 h window. It returns "interactive" or "template".
func (p *permissions) request(ctx context.Context, pnid string, u waUser, message string, tmpl PermissionTemplateConfig) (string, error) {
	if message != "" {
		_, err := p.api.SendCallPermissionRequest(ctx, pnid, u.ref(), message)
		var ge *whatsapp.GraphError
		switch {
		case err == nil:
			p.metrics.permissionRequests.WithLabelValues("interactive", "sent").Inc()
			return "interactive", nil
		case errors.As(err, &ge) && ge.Code == errOutsideWindow && tmpl.Name != "":
			// Outside the window: the template below.
		default:
			p.metrics.permissionRequests.WithLabelValues("interactive", "failed").Inc()
			return "", err
		}
	}
	if tmpl.Name == "" {
		return "", errors.New("no permission_template to send outside the 24 h window")
	}
	if _, err := p.api.SendCallPermissionTemplate(ctx, pnid, u.ref(), tmpl.Name, tmpl.Language); err != nil {
		p.metrics.permissionRequests.WithLabelValues("template", "failed").Inc()
		return "", err
	}
	p.metrics.permissionRequests.WithLabelValues("template", "sent").Inc()
	return "template", nil
}

// wait returns a channel that gets the user's next reply, and a function
// that stops waiting.
func (p *permissions) wait(pnid string, u waUser) (<-chan whatsapp.PermissionReply, func()) {
	k := userKey(pnid, u)
	ch := make(chan whatsapp.PermissionReply, 1)
	p.mu.Lock()
	if p.waiters[k] == nil {
		p.waiters[k] = map[chan whatsapp.PermissionReply]struct{}{}
	}
	p.waiters[k][ch] = struct{}{}
	p.mu.Unlock()
	return ch, func() {
		p.mu.Lock()
		delete(p.waiters[k], ch)
		if len(p.waiters[k]) == 0 {
			delete(p.waiters, k)
		}
		p.mu.Unlock()
	}
}

// reply takes a permission reply webhook: logged, counted, kept for the
// admin API, the cache dropped (the next call asks Meta), and the calls
// waiting for it woken.
func (p *permissions) reply(r whatsapp.PermissionReply) {
	resp := r.Response
	if resp == "" {
		resp = map[bool]string{true: "accept", false: "reject"}[r.Accepted]
	}
	source := r.Source
	if source == "" {
		source = "user_action"
	}
	p.metrics.permissionReplies.WithLabelValues(resp, permanence(r), source).Inc()
	p.log.Info("call permission reply", zap.String("phone_number_id", r.PhoneNumberID), zap.String("user", r.User().String()),
		zap.String("response", resp), zap.Bool("permanent", r.Permanent), zap.Time("expires", r.Expires), zap.String("source", source))
	rec := permissionReply{PhoneNumberID: r.PhoneNumberID, User: r.From, BSUID: r.FromUserID, Response: resp,
		Permanent: r.Permanent, Expires: r.Expires, Source: source, At: p.now()}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.replies) >= maxReplyLog {
		p.replies = append(p.replies[:0], p.replies[1:]...)
	}
	p.replies = append(p.replies, rec)
	for _, user := range []string{r.From, r.FromUserID} {
		if user == "" {
			continue
		}
		k := permKey{r.PhoneNumberID, user}
		delete(p.cache, k)
		for ch := range p.waiters[k] {
			select {
			case ch <- r:
			default: // it has one already
			}
		}
	}
}

func permanence(r whatsapp.PermissionReply) string {
	if r.Permanent {
		return "permanent"
	}
	return "temporary"
}

// repliesOf lists the replies kept for a user (all users when user is "").
func (p *permissions) repliesOf(pnid, user string) []permissionReply {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []permissionReply
	for _, r := range p.replies {
		if (pnid == "" || r.PhoneNumberID == pnid) && (user == "" || r.User == user || r.BSUID == user) {
			out = append(out, r)
		}
	}
	return out
}
