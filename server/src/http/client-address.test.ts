import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { ConfigError, readConfig } from '../config.js';
import { clientAddress, normalise, TrustedProxies } from './client-address.js';

const request = (remoteAddress: string, forwarded?: string | string[]) =>
  ({ socket: { remoteAddress }, headers: forwarded === undefined ? {} : { 'x-forwarded-for': forwarded } }) as unknown as IncomingMessage;

describe('TrustedProxies', () => {
  it('takes addresses, CIDRs and the names loopback, private and linklocal', () => {
    const trusted = TrustedProxies.parse('10.0.0.5, 192.168.0.0/16, fd00::/8, loopback');
    for (const yes of ['10.0.0.5', '192.168.3.4', 'fd12::1', '127.0.0.1', '127.9.9.9', '::1', '::ffff:10.0.0.5']) assert.ok(trusted.trusts(yes), yes);
    for (const no of ['10.0.0.6', '192.169.0.1', 'fe80::1', '8.8.8.8', 'nonsense', '']) assert.ok(!trusted.trusts(no), no);
    assert.ok(TrustedProxies.parse('private').trusts('172.20.1.1'));
    assert.ok(!TrustedProxies.parse('private').trusts('172.32.0.1'));
  });

  it('refuses what is no address or CIDR, in SSE_TRUSTED_PROXIES too', () => {
    for (const bad of ['nginx', '10.0.0.0/33', '10.0.0.0/x', '::/129', '1.2.3.4/8/9', '300.1.1.1']) {
      assert.throws(() => TrustedProxies.parse(bad), TypeError, bad);
      assert.throws(() => readConfig({ SSE_TRUSTED_PROXIES: bad }), (error: Error) => error instanceof ConfigError && error.message.startsWith('SSE_TRUSTED_PROXIES: '));
    }
    assert.equal(readConfig({}).trustedProxies, undefined);
    assert.deepEqual(readConfig({ SSE_TRUSTED_PROXIES: '127.0.0.1,10.0.0.0/8' }).trustedProxies?.entries, ['127.0.0.1', '10.0.0.0/8']);
  });
});

describe('clientAddress', () => {
  const trusted = TrustedProxies.parse('127.0.0.1,10.0.0.0/8');

  it('is the socket address without trusted proxies, or when the socket is not one, whatever the header says', () => {
    assert.equal(clientAddress(request('203.0.113.7', '1.2.3.4'), undefined), '203.0.113.7');
    assert.equal(clientAddress(request('203.0.113.7', '1.2.3.4'), trusted), '203.0.113.7');
    assert.equal(clientAddress(request('::ffff:203.0.113.7', '1.2.3.4'), trusted), '203.0.113.7');
  });

  it('from a trusted proxy, is the rightmost address that is not a trusted proxy', () => {
    assert.equal(clientAddress(request('127.0.0.1', '203.0.113.7'), trusted), '203.0.113.7');
    // A client that wrote its own header: nginx appends the real address, and the spoofed ones are to its left.
    assert.equal(clientAddress(request('127.0.0.1', '6.6.6.6, 203.0.113.7'), trusted), '203.0.113.7');
    // Two proxies: a load balancer (10.x) in front of nginx (127.0.0.1).
    assert.equal(clientAddress(request('127.0.0.1', '6.6.6.6, 198.51.100.2, 10.1.2.3'), trusted), '198.51.100.2');
    // Several headers count as one list, in order.
    assert.equal(clientAddress(request('127.0.0.1', ['6.6.6.6', '198.51.100.2, 10.1.2.3']), trusted), '198.51.100.2');
    assert.equal(clientAddress(request('127.0.0.1', ' [2001:db8::1]:443 '), trusted), '2001:db8::1');
    assert.equal(clientAddress(request('127.0.0.1', '203.0.113.7:5555'), trusted), '203.0.113.7');
  });

  it('falls back to the nearest trusted hop for no header, an all-trusted list, or an entry that is no address', () => {
    assert.equal(clientAddress(request('127.0.0.1'), trusted), '127.0.0.1');
    assert.equal(clientAddress(request('127.0.0.1', '10.0.0.9, 10.0.0.8'), trusted), '10.0.0.9');
    assert.equal(clientAddress(request('127.0.0.1', '203.0.113.7, unknown, 10.0.0.8'), trusted), '10.0.0.8');
    assert.equal(clientAddress(request('127.0.0.1', ''), trusted), '127.0.0.1');
  });

  it('normalises addresses', () => {
    assert.equal(normalise('::FFFF:1.2.3.4'), '1.2.3.4');
    assert.equal(normalise('fe80::1%eth0'), 'fe80::1');
    assert.equal(normalise('x'), undefined);
  });
});
