// Package deploytest holds no code: its tests check the deployment files
// (docker/compose*.yml, docker/Caddyfile*, docker/env.example, the PBX
// examples in configs/asterisk and configs/freeswitch, the README's quick
// start, and the examples for several instances: configs/haproxy and
// configs/kubernetes) against each other, without Docker; with the real
// docker-compose, caddy and haproxy where they are installed. Nothing
// imports it.
package deploytest
