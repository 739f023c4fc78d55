#!/usr/bin/env node
// Writes deploy/nginx-http2.conf from deploy/nginx.conf: its own header and TLS block (kept from the current file)
// in place of nginx.conf's header and its `listen 8080;` line, everything else copied. Run it after editing
// deploy/nginx.conf; e2e/http2-proxy.test.ts fails while the two differ anywhere else.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const deploy = join(new URL('..', import.meta.url).pathname, 'deploy');
const plain = readFileSync(join(deploy, 'nginx.conf'), 'utf8');
const current = readFileSync(join(deploy, 'nginx-http2.conf'), 'utf8');
const header = current.slice(0, current.indexOf('worker_processes'));
const tls = /^ {8}# --- TLS and HTTP\/2 [\s\S]*?# --- end of TLS and HTTP\/2 ---\n/m.exec(current)?.[0];
const body = plain.slice(plain.indexOf('worker_processes'));
if (!tls || !body.includes('        listen 8080;\n')) throw new Error('deploy/nginx-http2.conf has no TLS block, or deploy/nginx.conf no `listen 8080;`');
writeFileSync(join(deploy, 'nginx-http2.conf'), header + body.replace('        listen 8080;\n', tls));
console.log('deploy/nginx-http2.conf: written from deploy/nginx.conf');
