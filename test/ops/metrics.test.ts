import { describe, expect, it } from 'vitest';
import { ActiveUserTracker, createMetrics } from '../../src/ops/metrics.js';

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('createMetrics', () => {
  it('exposes every server metric in Prometheus text', async () => {
    const m = createMetrics({ processMetrics: false });
    m.registeredEndpoints.set(3);
    m.signedInUsers.inc(2);
    m.signedInUsers.dec();
    m.activeUsers.touch('alice@parley.test');
    m.activeUsers.touch('bob@parley.test');
    m.activeUsers.touch('alice@parley.test');
    m.requestsReceived.inc('MESSAGE');
    m.requestsReceived.inc('MESSAGE');
    m.requestsReceived.inc('REGISTER');
    m.requestsReceived.inc('FROBNICATE');
    m.responsesSent.inc(200);
    m.responsesSent.inc(202);
    m.responsesSent.inc(486);
    m.responsesSent.inc(999);
    m.messagesRouted.inc();
    m.messageBytesRouted.inc(120);
    m.presenceNotifications.inc(4);
    m.authFailures.inc('replayed');
    m.authChallenges.inc(2);
    m.failures.inc('timeout');
    m.transactionLatency.observe(0.003);
    m.transactionLatency.observe(0.2);
    m.transactionLatency.observe(100);

    const text = await m.render();
    expect(m.contentType).toContain('text/plain');
    expect(sample(text, 'parley_registered_endpoints')).toBe(3);
    expect(sample(text, 'parley_signed_in_users')).toBe(1);
    expect(sample(text, 'parley_active_users')).toBe(2);
    expect(sample(text, 'parley_sip_requests_received_total{method="MESSAGE"}')).toBe(2);
    expect(sample(text, 'parley_sip_requests_received_total{method="REGISTER"}')).toBe(1);
    expect(sample(text, 'parley_sip_requests_received_total{method="other"}')).toBe(1);
    expect(text).not.toContain('FROBNICATE');
    expect(sample(text, 'parley_sip_responses_sent_total{class="2xx"}')).toBe(2);
    expect(sample(text, 'parley_sip_responses_sent_total{class="4xx"}')).toBe(1);
    expect(sample(text, 'parley_messages_routed_total')).toBe(1);
    expect(sample(text, 'parley_message_bytes_routed_total')).toBe(120);
    expect(sample(text, 'parley_presence_notifications_sent_total')).toBe(4);
    expect(sample(text, 'parley_auth_failures_total{reason="replayed"}')).toBe(1);
    expect(sample(text, 'parley_auth_failures_total{reason="wrong_password"}')).toBe(0);
    expect(sample(text, 'parley_auth_challenges_total')).toBe(2);
    expect(sample(text, 'parley_failures_total{kind="timeout"}')).toBe(1);
    expect(sample(text, 'parley_failures_total{kind="store"}')).toBe(0);
    expect(text).toContain('# TYPE parley_sip_transaction_seconds histogram');
    expect(sample(text, 'parley_sip_transaction_seconds_bucket{le="0.005"}')).toBe(1);
    expect(sample(text, 'parley_sip_transaction_seconds_bucket{le="0.25"}')).toBe(2);
    expect(sample(text, 'parley_sip_transaction_seconds_bucket{le="32"}')).toBe(2);
    expect(sample(text, 'parley_sip_transaction_seconds_bucket{le="+Inf"}')).toBe(3);
    expect(sample(text, 'parley_sip_transaction_seconds_count')).toBe(3);
    expect(sample(text, 'parley_sip_transaction_seconds_sum')).toBeCloseTo(100.203);

    // A second scrape reports the same totals (collect resets before re-adding).
    m.messagesRouted.inc();
    expect(sample(await m.render(), 'parley_messages_routed_total')).toBe(2);
  });

  it('adds default labels, process metrics and gauge sources', async () => {
    const m = createMetrics({
      labels: { server: 'fe1', role: 'frontend' },
      sources: { registeredEndpoints: async () => 42, signedInUsers: () => 7 },
    });
    m.registeredEndpoints.set(1);
    const text = await m.render();
    expect(sample(text, 'parley_registered_endpoints{server="fe1",role="frontend"}')).toBe(42);
    expect(sample(text, 'parley_signed_in_users{server="fe1",role="frontend"}')).toBe(7);
    expect(text).toContain('parley_process_cpu_user_seconds_total');
  });
});

describe('ActiveUserTracker', () => {
  it('counts users seen within the window and forgets older ones', () => {
    let now = 1_000_000;
    const t = new ActiveUserTracker(5 * 60_000, () => now);
    t.touch('a');
    now += 4 * 60_000;
    t.touch('b');
    expect(t.count()).toBe(2);
    now += 2 * 60_000;
    expect(t.count()).toBe(1);
    t.touch('a');
    expect(t.count()).toBe(2);
    t.forget('a');
    expect(t.count()).toBe(1);
  });
});
