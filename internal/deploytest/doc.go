// Package deploytest holds no code: its tests check the deployment files
// (docker/compose*.yml, docker/Caddyfile, docker/env.example, the PBX
// examples in configs/asterisk and configs/freeswitch, the README's quick
// start) against each other, without Docker. Nothing imports it.
package deploytest
