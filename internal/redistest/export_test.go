package redistest

// Ping exposes ping to the external test package.
var Ping = ping
