// The launcher is shared with the benchmarks: it lives in test-kit/.
export * from '../../test-kit/slapd.js';
