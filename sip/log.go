package sip

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapHandler is a small slog.Handler that forwards sipgo's log/slog records
// into zap, so one log stream carries both. What a peer sends must not flood
// the log through it: a record about parsing (sipgo logs each unparsable
// datagram, whole, at ERROR) goes to debug, every string is cut to
// maxLogValue bytes, and each kind of record (its message) is written at
// most logBurst times per second, the next line counting those suppressed.
type zapHandler struct {
	log    *zap.Logger
	group  string
	fields []zap.Field
	limit  *logLimiter
}

// Bounds on third-party log records.
const (
	maxLogValue  = 200               // bytes of one string value
	logBurst     = 5                 // lines per kind per window
	logWindow    = time.Second       // the window
	maxLogKinds  = 128               // kinds tracked; others share one budget
	otherLogKind = "\x00other kinds" // the shared budget's key
)

func newSlog(l *zap.Logger) *slog.Logger {
	if l == nil {
		l = zap.NewNop()
	}
	return slog.New(&zapHandler{log: l.WithOptions(zap.AddCallerSkip(3)), limit: newLogLimiter()})
}

// logLimiter counts lines per kind in fixed windows.
type logLimiter struct {
	mu    sync.Mutex
	kinds map[string]*logKind
}

type logKind struct {
	start      time.Time // of the current window
	n          int       // lines written in it
	suppressed uint64    // lines dropped since the last one written
}

func newLogLimiter() *logLimiter { return &logLimiter{kinds: map[string]*logKind{}} }

// allow reports whether a line of this kind may be written now and, if so,
// how many were suppressed before it.
func (l *logLimiter) allow(kind string, now time.Time) (bool, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.kinds[kind]
	if k == nil {
		if len(l.kinds) >= maxLogKinds {
			kind = otherLogKind
			k = l.kinds[kind]
		}
		if k == nil {
			k = &logKind{start: now}
			l.kinds[kind] = k
		}
	}
	if now.Sub(k.start) >= logWindow {
		k.start, k.n = now, 0
	}
	if k.n >= logBurst {
		k.suppressed++
		return false, 0
	}
	k.n++
	s := k.suppressed
	k.suppressed = 0
	return true, s
}

// truncate cuts s to maxLogValue bytes (on a rune boundary), saying how long
// it was.
func truncate(s string) string {
	if len(s) <= maxLogValue {
		return s
	}
	cut := maxLogValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// isParseNoise reports whether a record is about input sipgo could not
// parse: the peer's fault, worth a debug line at most.
func isParseNoise(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "parse") || strings.Contains(m, "malformed")
}

func slogToZapLevel(l slog.Level) zapcore.Level {
	switch {
	case l >= slog.LevelError:
		return zapcore.ErrorLevel
	case l >= slog.LevelWarn:
		return zapcore.WarnLevel
	case l >= slog.LevelInfo:
		return zapcore.InfoLevel
	}
	return zapcore.DebugLevel
}

func (h *zapHandler) Enabled(_ context.Context, l slog.Level) bool {
	// A parse error at ERROR may still be dropped as debug: Handle decides.
	return h.log.Core().Enabled(slogToZapLevel(l))
}

func (h *zapHandler) Handle(_ context.Context, r slog.Record) error {
	level := slogToZapLevel(r.Level)
	if isParseNoise(r.Message) {
		level = zapcore.DebugLevel
	}
	ce := h.log.Check(level, r.Message)
	if ce == nil {
		return nil
	}
	ok, suppressed := h.limit.allow(r.Message, time.Now())
	if !ok {
		return nil
	}
	fields := make([]zap.Field, 0, len(h.fields)+r.NumAttrs()+1)
	fields = append(fields, h.fields...)
	r.Attrs(func(a slog.Attr) bool {
		fields = setField(fields, h.field(a))
		return true
	})
	if suppressed > 0 {
		fields = append(fields, zap.Uint64("suppressed", suppressed))
	}
	ce.Write(fields...)
	return nil
}

// sipgoKeys renames sipgo's attributes that would clash with the log
// schema's keys (gateway/logging.go): "caller" is sipgo's component, "src"
// a local address.
var sipgoKeys = map[string]string{"caller": "component", "src": "local_addr"}

func (h *zapHandler) field(a slog.Attr) zap.Field {
	key := a.Key
	if k, ok := sipgoKeys[key]; ok && h.group == "" {
		key = k
	}
	if h.group != "" {
		key = h.group + "." + key
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return zap.String(key, truncate(v.String()))
	case slog.KindInt64:
		return zap.Int64(key, v.Int64())
	case slog.KindUint64:
		return zap.Uint64(key, v.Uint64())
	case slog.KindFloat64:
		return zap.Float64(key, v.Float64())
	case slog.KindBool:
		return zap.Bool(key, v.Bool())
	case slog.KindDuration:
		return zap.Duration(key, v.Duration())
	case slog.KindTime:
		return zap.Time(key, v.Time())
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return zap.String(key, truncate(err.Error())) // a parse error may quote the input
		}
	}
	return zap.String(key, truncate(v.String()))
}

func (h *zapHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	n := &zapHandler{log: h.log, group: h.group, limit: h.limit, fields: make([]zap.Field, 0, len(h.fields)+len(attrs))}
	n.fields = append(n.fields, h.fields...)
	for _, a := range attrs {
		n.fields = setField(n.fields, h.field(a))
	}
	return n
}

// setField adds f to fields, replacing a field of the same key (sipgo
// names its component in nested With calls): each key once per line.
func setField(fields []zap.Field, f zap.Field) []zap.Field {
	for i := range fields {
		if fields[i].Key == f.Key {
			fields[i] = f
			return fields
		}
	}
	return append(fields, f)
}

func (h *zapHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	g := name
	if h.group != "" {
		g = h.group + "." + name
	}
	return &zapHandler{log: h.log, group: g, fields: h.fields, limit: h.limit}
}
