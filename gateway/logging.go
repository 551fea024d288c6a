package gateway

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The keys of the log schema (docs/operations.md, "Logs"). Each line has
// ts, level, logger (when named), msg and src, then the line's fields;
// stacktrace only on error lines at debug level.
const (
	LogKeyTime       = "ts"
	LogKeyLevel      = "level"
	LogKeyLogger     = "logger"
	LogKeyMessage    = "msg"
	LogKeySource     = "src"
	LogKeyStacktrace = "stacktrace"
)

// reservedLogKeys are the schema's own keys: a field named like one of them
// is renamed (key + "_field") so that no key appears twice on a line.
var reservedLogKeys = map[string]bool{
	LogKeyTime: true, LogKeyLevel: true, LogKeyLogger: true,
	LogKeyMessage: true, LogKeySource: true, LogKeyStacktrace: true,
}

// NewLogger builds the zap logger the config asks for, writing to stderr.
func NewLogger(c LogConfig) (*zap.Logger, error) {
	return NewLoggerTo(c, zapcore.Lock(os.Stderr))
}

// NewLoggerTo is NewLogger writing to w: json (one object a line, each key
// once) or console (the same fields for a human: tab-separated time, level,
// logger, source and message, then the fields as JSON). Times are ISO-8601
// in UTC with milliseconds in both. Stack traces are added to error lines
// only at level debug (else only to DPanic and worse).
func NewLoggerTo(c LogConfig, w zapcore.WriteSyncer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	ec := zapcore.EncoderConfig{
		TimeKey:        LogKeyTime,
		LevelKey:       LogKeyLevel,
		NameKey:        LogKeyLogger,
		CallerKey:      LogKeySource,
		FunctionKey:    zapcore.OmitKey,
		MessageKey:     LogKeyMessage,
		StacktraceKey:  LogKeyStacktrace,
		LineEnding:     zapcore.DefaultLineEnding,
		EncodeLevel:    zapcore.LowercaseLevelEncoder,
		EncodeTime:     encodeTimeUTC,
		EncodeDuration: zapcore.StringDurationEncoder,
		EncodeCaller:   zapcore.ShortCallerEncoder,
	}
	var enc zapcore.Encoder
	switch c.Format {
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	case "console", "":
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("log.format: %q is not console or json", c.Format)
	}
	stack := zapcore.DPanicLevel
	if lvl == zapcore.DebugLevel {
		stack = zapcore.ErrorLevel
	}
	core := newUniqueKeysCore(zapcore.NewCore(enc, w, zap.NewAtomicLevelAt(lvl)))
	return zap.New(core, zap.AddCaller(), zap.AddStacktrace(stack), zap.ErrorOutput(w)), nil
}

// encodeTimeUTC writes 2006-01-02T15:04:05.000Z: ISO-8601 (RFC 3339), UTC,
// milliseconds.
func encodeTimeUTC(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	enc.AppendString(t.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
}

// droppedLogKeys counts fields dropped as repeats: a call site to fix
// (tests expect none).
var droppedLogKeys atomic.Uint64

// uniqueKeysCore keeps each key once per line whatever the call sites do: a
// field whose key a With() chain already added, or that came earlier on
// the same line, is dropped (the first value wins); a field named like a
// schema key (ts, level, logger, msg, src, stacktrace) is renamed. Fields
// after a zap.Namespace are nested and passed as they are.
type uniqueKeysCore struct {
	zapcore.Core
	keys   map[string]bool // added by With; never changed once shared
	nested bool            // a With added a namespace: later keys are inside it
}

func newUniqueKeysCore(c zapcore.Core) zapcore.Core {
	return &uniqueKeysCore{Core: c, keys: map[string]bool{}}
}

// filterFields returns fields without the keys of base nor repeats among
// themselves (adding theirs to seen), and whether a namespace began.
func filterFields(fields []zapcore.Field, base, seen map[string]bool, nested bool) ([]zapcore.Field, bool) {
	if nested {
		return fields, true
	}
	out := make([]zapcore.Field, 0, len(fields))
	for i, f := range fields {
		if reservedLogKeys[f.Key] {
			f.Key += "_field"
		}
		if base[f.Key] || seen[f.Key] {
			droppedLogKeys.Add(1)
			continue
		}
		seen[f.Key] = true
		out = append(out, f)
		if f.Type == zapcore.NamespaceType {
			return append(out, fields[i+1:]...), true
		}
	}
	return out, false
}

func (c *uniqueKeysCore) With(fields []zapcore.Field) zapcore.Core {
	keys := make(map[string]bool, len(c.keys)+len(fields))
	for k := range c.keys {
		keys[k] = true
	}
	kept, nested := filterFields(fields, nil, keys, c.nested)
	return &uniqueKeysCore{Core: c.Core.With(kept), keys: keys, nested: nested}
}

func (c *uniqueKeysCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *uniqueKeysCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	kept, _ := filterFields(fields, c.keys, make(map[string]bool, len(fields)), c.nested)
	return c.Core.Write(ent, kept)
}
