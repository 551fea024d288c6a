package gateway

// LogKeysDropped is how many repeated log fields the daemon's logger has
// dropped so far (each one a call site that repeats a key).
func LogKeysDropped() uint64 { return droppedLogKeys.Load() }
