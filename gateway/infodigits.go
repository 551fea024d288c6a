package gateway

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// infoDigitDuration is how long each caller digit lasts in its SIP INFO.
const infoDigitDuration = 100 * time.Millisecond

// infoSender sends the caller's digits to the PBX as SIP INFO (a trunk with
// dtmf: info, or its fallback). The bridge reports digits on its media
// goroutine, which must not wait for a SIP transaction: digits queue here
// and one goroutine per call sends them in order. INFO needs the dialog: a
// call bridged on early media gets it with the PBX's 200 OK (attach), and
// digits pressed before are dropped (RFC 6086 §4.2: no INFO before the
// dialog is confirmed, unless the PBX supports 100rel).
type infoSender struct {
	queue  chan rune
	done   chan struct{}
	target atomic.Pointer[infoDigitSender]
}

// infoDigitSender is the PBX call as the sender uses it.
type infoDigitSender interface {
	SendInfoDigit(ctx context.Context, digit rune, d time.Duration) error
}

func newInfoSender(enabled bool, log *zap.Logger) *infoSender {
	if !enabled {
		return nil
	}
	s := &infoSender{queue: make(chan rune, 32), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for d := range s.queue {
			t := s.target.Load()
			if t == nil {
				log.Info("sip INFO digit dropped: the PBX has not answered yet", zap.String("digit", string(d)))
				continue
			}
			sc := *t
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := sc.SendInfoDigit(ctx, d, infoDigitDuration); err != nil {
				log.Warn("sip INFO digit failed", zap.String("digit", string(d)), zap.Error(err))
			}
			cancel()
		}
	}()
	return s
}

// attach gives the sender the answered dialog to send INFO in.
func (s *infoSender) attach(sc infoDigitSender) {
	if s != nil {
		s.target.Store(&sc)
	}
}

// send queues a digit; a full queue (a caller far ahead of the PBX) drops it.
func (s *infoSender) send(d rune) {
	if s == nil {
		return
	}
	select {
	case s.queue <- d:
	default:
	}
}

// stop ends the sender once queued digits are sent (call it after the bridge
// is closed, when no more digits come).
func (s *infoSender) stop() {
	if s == nil {
		return
	}
	close(s.queue)
	<-s.done
}
