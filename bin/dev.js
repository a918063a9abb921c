#!/usr/bin/env node
// Development entry: runs the compiled commands after `npm run build`, with oclif's
// development settings (stack traces, no manifest cache).
import { execute } from '@oclif/core';
import { installExitCodeBridge } from '../dist/src/cli/exit-codes.js';

installExitCodeBridge();
await execute({ development: true, dir: import.meta.url });
