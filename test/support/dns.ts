// Shared with the benchmarks: it lives in test-kit/.
export * from '../../test-kit/dns.js';
